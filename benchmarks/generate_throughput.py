"""Generation throughput: batched vs one-at-a-time local LLM, and HTTP concurrency 8 vs 1.

    python benchmarks/generate_throughput.py [--json PATH] [--items 32] [--delay 0.05] [--smoke]

Both measurements run the real P1 pipeline code (`run_pipeline`) in this process. The local LLM is a
tiny random Llama (its answers are gibberish and get rejected; what is timed is generation). The
HTTP backend talks to an OpenAI-compatible server started on 127.0.0.1 that answers every request
after a fixed delay, like a remote vLLM server under no load. `--smoke`: 2 items, a smaller LLM, no
delay (a check that the script runs).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import parser, report  # noqa: E402
from negation_encoder.data.llm import OpenAIChat, OpenAIMLLM, PromptedLLM, TransformersChat  # noqa: E402
from negation_encoder.data.pipelines import CaptionItem, PipelineConfig, run_pipeline  # noqa: E402
from negation_encoder.testing.tiny import build_chat_lm  # noqa: E402


def _tiny_llm(smoke: bool = False):
    size = dict(hidden_size=16, num_layers=1, num_heads=2) if smoke else \
        dict(hidden_size=256, num_layers=4, num_heads=4)
    model, tok = build_chat_lm(seed=0, words=[f"w{i}" for i in range(200)], **size)
    model.generation_config.eos_token_id = None  # always generate max_new_tokens: a fixed amount of work
    return model, tok


def _server(delay: float):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            """Silence per-request logging."""

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay)
            content = body["messages"][-1]["content"]
            if isinstance(content, list):
                msg = {"content": "no"}
            elif content.startswith("You are given"):
                msg = {"content": '["fork", "lamp", "cup"]'}
            else:
                caption = content.split('Caption: "')[-1].rstrip('"\n')
                concept = content.split("there is ")[1].split(" in the photo")[0].split(" ", 1)[1]
                msg = {"content": f"{caption} with {'a' if 'Do not use' in content else 'no'} {concept}"}
            out = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", **msg}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


class _Absent:
    name, prompt_version = "stub", "v1"

    def presence_probability(self, images, concepts):
        return [0.0] * len(images)


def _items(n: int) -> list[CaptionItem]:
    return [CaptionItem(f"c{i}", f"{i}.png", f"a dog sitting on a red couch number {i}") for i in range(n)]


def _timed(items, llm, mllm, batch_size: int, root: Path, tag: str) -> tuple[float, int]:
    out = root / f"{tag}.jsonl"
    start = time.perf_counter()
    stats = run_pipeline(items, out, PipelineConfig(pipeline="p1", batch_size=batch_size), llm, mllm, progress=False)
    return time.perf_counter() - start, stats.items_processed


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__)
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--delay", type=float, default=0.05, help="seconds the local server waits per request")
    args = ap.parse_args(argv)
    if args.smoke:
        args.items, args.delay = 2, 0.0
    res: dict = {"smoke": args.smoke, "items": args.items, "server_delay_s": args.delay}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, tok = _tiny_llm(args.smoke)
        items = _items(args.items)
        from PIL import Image

        for it in items:
            Image.new("RGB", (32, 32), (120, 30, 30)).save(root / it.image)
        one = PromptedLLM(TransformersChat(model, tok, batch_size=1))
        batched = PromptedLLM(TransformersChat(model, tok, batch_size=args.items))
        _timed(items[:2], one, _Absent(), 1, root, "warmup")
        t1, n1 = _timed(items, one, _Absent(), 1, root, "local1")
        tb, nb = _timed(items, batched, _Absent(), args.items, root, "localb")
        res["local_one_at_a_time_items_per_s"] = n1 / t1
        res["local_batched_items_per_s"] = nb / tb
        res["batch_ratio"] = res["local_batched_items_per_s"] / res["local_one_at_a_time_items_per_s"]
        srv, url = _server(args.delay)
        try:
            for conc in (1, 8):
                chat = OpenAIChat(url, "bench", concurrency=conc)
                t, n = _timed(items, PromptedLLM(chat), OpenAIMLLM(chat, image_root=root), args.items, root, f"http{conc}")
                res[f"http_concurrency_{conc}_items_per_s"] = n / t
        finally:
            srv.shutdown()
        res["concurrency_ratio"] = res["http_concurrency_8_items_per_s"] / res["http_concurrency_1_items_per_s"]
    return report(res, args.json)


if __name__ == "__main__":
    main()
