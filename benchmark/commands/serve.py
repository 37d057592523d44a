"""`serve`: the subject VLM behind an OpenAI-compatible chat endpoint."""
from __future__ import annotations

import argparse


def add_parser(commands) -> None:
    serve = commands.add_parser("serve", help="the subject VLM behind an OpenAI-compatible chat endpoint")
    serve.add_argument("--config", metavar="FILE", help="a run config whose [vlm], [sae], ... tables name the subject")
    serve.add_argument("--world", default="default", help="world preset, when no --config")
    serve.add_argument("--lm", help="the world's LM size (default large), or the VLM's name")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    from benchmark.config.read import read_run_file
    from benchmark.explainers.serve import make_server, subject_answerer
    from benchmark.sources import open_source

    models = read_run_file(args.config).models if args.config else None
    source = open_source(("models", models, args.lm) if models else ("world", args.world, args.lm))
    server = make_server(subject_answerer(source), source.lm, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving {source.lm} at http://{host}:{port}/v1 (model {source.lm!r}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
