"""Stage 5, results: the append-only row store (`rows`), leaderboards regenerated from rows alone
(`leaderboard`, `board_readme`), the README's findings re-tested (`findings`) and the check a run
passes before it joins a leaderboard (`submission`)."""
