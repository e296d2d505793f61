"""N browser sessions uploading at once against a real `streamlit run app.py` server: do they
all finish, how long does it take, and how much memory does the server peak at?

    CXR_DATA_DIR=../shared/data/scr python scripts/stress.py --sessions 8
    python scripts/stress.py --sessions 8 --side 4300     # 16-bit 4300 x 4300 uploads

The server is started as users get it (`.streamlit/config.toml`, the shipped models or
`--models`), and each session talks to it the way the browser does: a websocket on
/_stcore/stream carrying Streamlit's protobuf messages, the file PUT to the upload URL
the server hands out, then a rerun whose widget state names the file. So every session
is a separate AppSession thread of one server process, sharing its cached models and
the model gate (cxr_dash.concurrency), and the figures are the server's own: its RSS is
sampled from /proc every 0.1 s, and its kernel peak (VmHWM) read at the end.

One session first loads the page alone (the models load and warm up): "idle" is the
server's RSS after that. Then all sessions connect, wait at a barrier, and upload a
different radiograph each at the same instant (cases of --data as stored, or resized to
--side as 16-bit PNGs built in memory; synthetic images without --data). A session
finishes when its Overview (five masks, estimated Jaccard, measurements) has rendered
without an error or exception; it reports whether it was told its place in the queue.
Nothing is written to disk.
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field_name)


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak, self.stop = pid, every_s, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(self.every_s)


def start_server(port: int, models: str | None) -> subprocess.Popen:
    import requests

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if models:
        env["CXR_MODEL_DIR"] = models
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                               "--server.port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).ok:
                return server
        except requests.ConnectionError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not answer /_stcore/health within 120 s:\n"
                     + (server.stdout.read() if server.stdout else ""))


@dataclass
class Outcome:
    index: int
    name: str
    ok: bool = False
    seconds: float = 0.0
    queued_at: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    images: int = 0


class Session:
    """One browser tab, as far as the server can tell."""

    def __init__(self, port: int):
        import requests
        from websockets.sync.client import connect

        self.base = f"http://127.0.0.1:{port}"
        self.http = requests.Session()
        self.http.get(self.base + "/_stcore/health", timeout=10)      # sets the XSRF cookie
        self.xsrf = self.http.cookies.get("_streamlit_xsrf", "")
        self._stack = ExitStack()
        self.ws = self._stack.enter_context(connect(
            f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit", self.xsrf],
            additional_headers={"Origin": self.base, "Cookie": f"_streamlit_xsrf={self.xsrf}"},
            max_size=None, open_timeout=30))
        self.session_id = ""
        self.uploader_id = ""

    def send(self, **fields):
        from streamlit.proto.BackMsg_pb2 import BackMsg

        self.ws.send(BackMsg(**fields).SerializeToString())

    def rerun(self, widget_states=()):
        from streamlit.proto.ClientState_pb2 import ClientState
        from streamlit.proto.WidgetStates_pb2 import WidgetStates

        self.send(rerun_script=ClientState(widget_states=WidgetStates(widgets=list(widget_states))))

    def read_run(self, outcome: Outcome | None = None, timeout_s: float = 900):
        """Messages until the script run finishes: the uploader's id, errors, queue places."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        deadline = time.time() + timeout_s
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(self.ws.recv(timeout=max(1.0, deadline - time.time())))
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.session_id = msg.new_session.initialize.session_id
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                which = element.WhichOneof("type")
                if which == "file_uploader":
                    self.uploader_id = element.file_uploader.id
                elif outcome is not None and which == "alert":
                    body = element.alert.body
                    if "in the queue" in body:
                        place = body.split("**")[1].split()[0]
                        outcome.queued_at.append(int("".join(c for c in place if c.isdigit())))
                    elif element.alert.format == element.alert.ERROR:
                        outcome.errors.append(body)
                elif outcome is not None and which == "exception":
                    outcome.errors.append(f"exception: {element.exception.message}")
                elif outcome is not None and which == "imgs":
                    outcome.images += 1
            elif kind == "script_finished":
                if msg.script_finished == msg.FINISHED_SUCCESSFULLY:
                    return
                if msg.script_finished == msg.FINISHED_WITH_COMPILE_ERROR:
                    raise RuntimeError("the app does not compile")

    def upload(self, name: str, data: bytes):
        """The file on the server, as the browser puts it there; its widget state back."""
        from streamlit.proto.Common_pb2 import (FileUploaderState, FileURLsRequest,
                                                UploadedFileInfo)
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        self.send(file_urls_request=FileURLsRequest(request_id="1", file_names=[name],
                                                    session_id=self.session_id))
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(self.ws.recv(timeout=60))
            if msg.WhichOneof("type") == "file_urls_response":
                urls = msg.file_urls_response.file_urls[0]
                break
        url = urls.upload_url if urls.upload_url.startswith("http") else self.base + urls.upload_url
        response = self.http.put(url, files={name: (name, data, "application/octet-stream")},
                                 headers={"X-Xsrftoken": self.xsrf}, timeout=120)
        response.raise_for_status()
        info = UploadedFileInfo(name=name, size=len(data), file_id=urls.file_id, file_urls=urls)
        return WidgetState(id=self.uploader_id,
                           file_uploader_state_value=FileUploaderState(uploaded_file_info=[info]))

    def close(self):
        self._stack.close()


def uploads(n: int, data_dir: str | None, side: int) -> list[tuple[str, bytes]]:
    """n different radiographs: SCR cases (as stored, or resized to a 16-bit side x side
    PNG) or, without data, synthetic ones. Built in memory only."""
    from PIL import Image

    files = []
    cases = sorted((Path(data_dir) / "images").glob("*.png"))[:n] if data_dir else []
    for i in range(n):
        if cases:
            raw = cases[i % len(cases)].read_bytes()
            name = cases[i % len(cases)].name
            if not side:
                files.append((name, raw))
                continue
            pixels = np.asarray(Image.open(io.BytesIO(raw)).convert("L"), np.float32)
        else:
            name = f"synthetic{i}.png"
            yy, xx = np.mgrid[:512, :512] / 512
            pixels = (150 + 60 * yy - sum(90 * np.exp(-(((xx - c) / 0.15) ** 2 + ((yy - 0.5) / 0.25) ** 2))
                                          for c in (0.3 + 0.01 * i, 0.7)))
            pixels = pixels + np.random.default_rng(i).normal(0, 6, pixels.shape)
        if side:
            import cv2

            pixels = cv2.resize(np.asarray(pixels, np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
            image = Image.fromarray(np.clip(pixels * 257, 0, 65535).astype(np.uint16))
            name = Path(name).stem + f"_{side}px16.png"
        else:
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        files.append((name, buffer.getvalue()))
    return files


def run_session(port: int, index: int, name: str, data: bytes, barrier: threading.Barrier,
                out: list[Outcome]):
    outcome = Outcome(index, name)
    out[index] = outcome
    session = None
    try:
        session = Session(port)
        session.rerun()
        session.read_run()
        barrier.wait(120)
        started = time.perf_counter()
        state = session.upload(name, data)
        session.rerun([state])
        session.read_run(outcome)
        outcome.seconds = time.perf_counter() - started
        outcome.ok = not outcome.errors and outcome.images >= 1
    except Exception as exc:   # a failed session is reported, the others go on
        outcome.errors.append(f"{type(exc).__name__}: {exc}")
        if not barrier.broken:
            barrier.abort()
    finally:
        if session is not None:
            session.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--side", type=int, default=0,
                        help="resize each upload to a 16-bit side x side PNG (0: as stored)")
    parser.add_argument("--data", default=os.environ.get("CXR_DATA_DIR"),
                        help="SCR folder (default CXR_DATA_DIR; synthetic images without it)")
    parser.add_argument("--models", default=None, help="model set (default: the app's, weights/)")
    parser.add_argument("--rss-limit-gb", type=float, default=3.0)
    args = parser.parse_args(argv)

    files = uploads(args.sessions, args.data, args.side)
    port = free_port()
    server = start_server(port, args.models)
    sampler = RssSampler(server.pid)
    sampler.start()
    try:
        warm = time.perf_counter()
        first = Session(port)
        first.rerun()
        first.read_run()
        first.close()
        warm = time.perf_counter() - warm
        time.sleep(2)
        idle = proc_status(server.pid, "VmRSS")
        out: list[Outcome] = [None] * args.sessions  # type: ignore[list-item]
        barrier = threading.Barrier(args.sessions)
        threads = [threading.Thread(target=run_session, args=(port, i, name, data, barrier, out))
                   for i, (name, data) in enumerate(files)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        time.sleep(0.3)
        peak_sampled, hwm = sampler.peak, proc_status(server.pid, "VmHWM")
    finally:
        sampler.stop.set()
        server.terminate()
        try:
            log, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            log, _ = server.communicate()
    done = [o for o in out if o.ok]
    sizes = sorted({len(d) for _, d in files})
    print(f"{args.sessions} sessions, uploads {'as stored' if not args.side else f'{args.side} px 16-bit'} "
          f"({sizes[0] / MB:.1f}-{sizes[-1] / MB:.1f} MB), {os.cpu_count()} CPUs, "
          f"model slots: {os.environ.get('CXR_MODEL_SLOTS') or 'one per core'}")
    print(f"first page load (models loaded and warmed up): {warm:.1f} s; "
          f"server idle RSS {idle / MB:.0f} MB")
    for o in out:
        queue = f"queued at place {o.queued_at[0]}" if o.queued_at else "not queued"
        print(f"  session {o.index}: {o.name}: {'done' if o.ok else 'FAILED'} in {o.seconds:.1f} s, "
              f"{queue}" + (f"; {o.errors}" if o.errors else ""))
    print(f"completed {len(done)}/{args.sessions}; wall time {wall:.1f} s (upload to rendered "
          f"Overview: median {np.median([o.seconds for o in done]) if done else float('nan'):.1f} s, "
          f"max {max((o.seconds for o in done), default=float('nan')):.1f} s); "
          f"{sum(bool(o.queued_at) for o in out)} told their place in the queue")
    over = hwm > args.rss_limit_gb * 2**30
    print(f"server RSS: idle {idle / MB:.0f} MB, peak {hwm / MB:.0f} MB (VmHWM; sampled max "
          f"{peak_sampled / MB:.0f} MB), {hwm / MB - idle / MB:.0f} MB above idle; limit "
          f"{args.rss_limit_gb:.1f} GB: {'OVER' if over else 'ok'}")
    if "Traceback" in (log or ""):
        print("server log has a traceback:\n" + log[-4000:])
    return 0 if len(done) == args.sessions and not over else 1


if __name__ == "__main__":
    sys.exit(main())
