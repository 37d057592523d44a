"""Any VLM as the explainer: an OpenAI-compatible server on loopback serves the tiny world's VLM
(the chat-completions request and response shapes, images as data URLs), and `topk` through it
gives the in-process explanations; a run that dies mid-batch resumes without asking twice; a server
that fails every third request still gives every explanation; steering methods are refused; every
explanation row records what it cost."""
from __future__ import annotations

import json
import re
import threading

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.config.method import MethodConfig
from benchmark.config.run import RunConfig
from benchmark.explainers import ExplainerSpec
from benchmark.explainers.serve import Refused, make_server, subject_answerer
from benchmark.pipeline import run
from benchmark.sources import open_source
from tests.timing import TickingClock

FEATURES = "0:10"
BATCH = 4
STEP = 0.25
"""Seconds between readings of the clock that times answering (`tests.timing.TickingClock`): each
batch's answers take exactly STEP seconds, so a feature's `cost_seconds` is STEP over its batch's size."""


class Served:
    """The world's subject behind a loopback endpoint, counting requests; `fail` decides, per
    request number, whether it fails (the server answers 500), `refuse` whether it is refused for good
    (None, or the status and message the server answers)."""

    def __init__(self):
        self.answer = subject_answerer(open_source(("world", "tiny", "small")))
        self.requests, self.fail, self.refuse = 0, lambda n: False, lambda n: None
        self.server = make_server(self._answer, "tiny-small")
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _answer(self, *args):
        self.requests += 1
        if self.refuse(self.requests) is not None:
            raise Refused(*self.refuse(self.requests))
        if self.fail(self.requests):
            raise RuntimeError(f"request {self.requests} fails on purpose")
        return self.answer(*args)


@pytest.fixture(scope="module")
def served(world):
    s = Served()
    yield s
    s.server.shutdown()


def endpoint(served: Served, **options) -> ExplainerSpec:
    return ExplainerSpec.from_table({"kind": "openai", "base_url": served.url, "model": "tiny-small", **options}, "test")


def explanations(run_dir) -> dict[tuple[str, int], dict]:
    rows = [json.loads(line) for line in (run_dir / "explanations.jsonl").read_text().splitlines()]
    return {(r["method"], r["feature"]): r for r in rows}


def config(tmp_path, name: str, explainer: ExplainerSpec | None, methods=("topk", "describe-top1")) -> RunConfig:
    """Batches of 4, and a seed no other test uses (it changes no answer of these methods, only the
    cache key), so the in-process explanations are computed here, in the batches the endpoint's are:
    a feature's cost is its batch's share."""
    return RunConfig(methods=methods, features=FEATURES, lm="small", world="tiny", out=str(tmp_path / name),
                     metrics="none", method=MethodConfig(batch_size=BATCH, seed=17, explainer=explainer))


def ticking(monkeypatch) -> None:
    monkeypatch.setattr("benchmark.explaining.context.time", TickingClock(STEP))


@pytest.fixture(scope="module")
def in_process(world, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        ticking(mp)
        return explanations(run(config(tmp_path_factory.mktemp("in-process"), "out", None)))


def known_costs(rows: dict[tuple[str, int], dict]) -> dict[tuple[str, int], dict]:
    """What each row of topk (5 images, the shared prompt) or describe-top1 (1 image, the describe
    prompt) cost, from the prompt's layout and the row's raw answer: prompt tokens are <bos>, the image
    tokens and the prompt's and answer prefix's words (a word-level tokenizer); a row's answer tokens
    are its answer's words and <eos>, at most max_new_tokens; a feature is charged its batch's mean, and
    STEP seconds over its batch's size."""
    source = open_source(("world", "tiny", "small"))
    prompts = source.spec.prompts

    def prompt_tokens(n: int) -> int:
        prompt = prompts.shared if n > 1 else prompts.describe
        return 1 + n * source.vlm.tokens_per_image + len(f"{prompt} {prompts.answer_prefix}".split())

    def answer_tokens(row: dict) -> int:
        return min(len(row["answer"].split()) + 1, source.max_new_tokens(row["method"] == "topk"))

    out = {}
    for (method, f), row in rows.items():
        batch = [rows[method, g] for g in range(f - f % BATCH, f - f % BATCH + BATCH) if (method, g) in rows]
        out[method, f] = {"cost_prompt_tokens": prompt_tokens(5 if method == "topk" else 1),
                          "cost_answer_tokens": np.mean([answer_tokens(r) for r in batch]),
                          "cost_seconds": STEP / len(batch)}
    return out


def test_an_endpoint_serving_the_subject_gives_the_in_process_explanations(served, in_process, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATUREBENCH_TEST_KEY", "secret")
    ticking(monkeypatch)
    rows = explanations(run(config(tmp_path, "endpoint", endpoint(served, api_key_env="FEATUREBENCH_TEST_KEY"))))
    assert {k: r["explanation"] for k, r in rows.items()} == {k: r["explanation"] for k, r in in_process.items()}
    assert len({r["explanation"] for r in rows.values()}) > 1
    known = known_costs(rows)
    for (method, f), row in rows.items():  # one request per feature
        assert row["cost_images"] == (5 if method == "topk" else 1)
        assert row["cost_seconds"] == known[method, f]["cost_seconds"]  # a request batch's time, shared
    for method in ("topk", "describe-top1"):  # the provider's usage adds up to the tokens the subject counted
        for column in ("cost_prompt_tokens", "cost_answer_tokens"):
            served_total = sum(r[column] for (m, _), r in rows.items() if m == method)
            assert served_total == pytest.approx(sum(r[column] for (m, _), r in in_process.items() if m == method))
            assert served_total == pytest.approx(sum(c[column] for (m, _), c in known.items() if m == method))


def test_a_run_that_dies_mid_batch_resumes_asking_only_what_is_missing(served, in_process, tmp_path):
    spec = endpoint(served, retries=0, concurrency=1, model="tiny-small-resume")  # its own cache
    served.requests, served.fail = 0, lambda n: n > 3  # the server goes down after 3 answers
    with pytest.raises(Exception):
        run(config(tmp_path, "dies", spec, methods=("topk",)))
    served.requests, served.fail = 0, lambda n: False
    rows = explanations(run(config(tmp_path, "dies", spec, methods=("topk",))))
    assert served.requests == 10 - 3  # the 3 answers stored before it died are not asked again
    assert {k: r["explanation"] for k, r in rows.items()} == {k: r["explanation"] for k, r in in_process.items()
                                                             if k[0] == "topk"}


def test_a_server_failing_every_third_request_loses_nothing(served, in_process, tmp_path):
    spec = endpoint(served, model="tiny-small-flaky", concurrency=2)
    served.requests, served.fail = 0, lambda n: n % 3 == 0
    try:
        rows = explanations(run(config(tmp_path, "flaky", spec)))
    finally:
        served.fail = lambda n: False
    assert served.requests > 20  # 20 answers, and the failed requests retried
    assert {k: r["explanation"] for k, r in rows.items()} == {k: r["explanation"] for k, r in in_process.items()}


def test_steering_methods_are_refused_with_another_explainer(served, tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text(f'method = "steering,topk,hybrid"\nworld = "tiny"\nlm = "small"\nmetrics = "none"\n'
                    f'[explainer]\nkind = "openai"\nbase_url = "{served.url}"\nmodel = "tiny-small"\n')
    assert main(["--config", str(toml), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == ("error: steering, hybrid: steer the subject VLM's tower, which the "
                                               "[explainer] (openai) cannot; run them without [explainer]")
    assert not (tmp_path / "out").exists()


def test_a_missing_api_key_is_refused_before_anything_runs(served, tmp_path, monkeypatch):
    monkeypatch.delenv("FEATUREBENCH_NO_SUCH_KEY", raising=False)
    with pytest.raises(Exception, match="api_key_env 'FEATUREBENCH_NO_SUCH_KEY': that environment variable is not set"):
        run(config(tmp_path, "nokey", endpoint(served, api_key_env="FEATUREBENCH_NO_SUCH_KEY")))
    assert not (tmp_path / "nokey").exists()


def test_subject_rows_record_tokens_images_and_seconds(in_process):
    known = known_costs(in_process)
    for key, row in in_process.items():
        assert row["cost_images"] == (5 if row["method"] == "topk" else 1)
        assert {c: row[c] for c in known[key]} == pytest.approx(known[key])
    topk = np.mean([r["cost_prompt_tokens"] for r in in_process.values() if r["method"] == "topk"])
    one = np.mean([r["cost_prompt_tokens"] for r in in_process.values() if r["method"] == "describe-top1"])
    assert topk > 3 * one  # five images' tokens against one


@pytest.mark.parametrize("status, message, fix", [
    (401, "Incorrect API key provided", "check the key in the variable [explainer] api_key_env names"),
    (400, "image too large: 5 images, at most 4", "the endpoint cannot take this request"),
    (404, "The model `tiny-small` does not exist", "check [explainer] model and base_url")])
def test_an_endpoint_refusing_for_good_is_one_line_exit_2_and_keeps_what_it_answered(served, tmp_path, capsys,
                                                                                   status, message, fix):
    model = f"tiny-small-refuses-{status}"  # its own answer store
    toml = tmp_path / "run.toml"
    toml.write_text(f'method = "topk"\nworld = "tiny"\nlm = "small"\nmetrics = "none"\nfeatures = "{FEATURES}"\n'
                    f'batch_size = 4\n[explainer]\nkind = "openai"\nbase_url = "{served.url}"\nmodel = "{model}"\n'
                    f'concurrency = 1\n')
    served.requests, served.refuse = 0, lambda n: (status, message) if n > 5 else None  # 5 answers, then refused
    try:
        capsys.readouterr()
        assert main(["--config", str(toml), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        errors = re.findall(r"error: [^\r\n]*", err)  # progress bars share stderr
        assert len(errors) == 1 and f"answered {status}: {message}; {fix}" in errors[0] and "Traceback" not in err
        assert not (tmp_path / "out").exists()
        served.requests, served.refuse = 0, lambda n: None
        assert main(["--config", str(toml), "--out", str(tmp_path / "out")]) == 0
        assert served.requests == 10 - 5  # the 5 answers before the refusal were kept
    finally:
        served.refuse = lambda n: None
