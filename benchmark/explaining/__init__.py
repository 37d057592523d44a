"""Stage 3, explaining: what a method reads (`context`), the cached, resumable loop over features
(`explain`), where it runs (`backends`: this process or Ray) and steering settings chosen on a slice
(`tuning`)."""
