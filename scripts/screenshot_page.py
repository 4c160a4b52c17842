"""A screenshot of a web page once it has finished working, with headless
Chromium driven over its DevTools pipe (standard library only).

    python scripts/screenshot_page.py URL OUT.png [--busy=processing] [--timeout=300]

Chromium's own `--screenshot` takes the picture on virtual time, which
runs ahead while the page waits on its server: the demo's picture came out
with every output still "processing". Here the page is loaded in real
time and the picture is taken when no visible text holds a `--busy` word
(checked twice, a second apart), or fails at `--timeout` seconds.
`--remote-debugging-pipe` speaks the DevTools protocol as NUL-separated
JSON on file descriptors 3 (to Chromium) and 4 (from it).
"""

import argparse
import base64
import json
import os
import select
import subprocess
import sys
import time


class Browser:
    def __init__(self, chromium, width, height):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        # the child's fds 3 and 4 are these pipe ends (redirected by the shell)
        command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_child} 4>&{from_child}', "chromium", *command],
            pass_fds=(to_child, from_child), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self._id = 0
        self._buffer = b""

    def call(self, method, session=None, timeout=60, **params):
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                # (select bounds the wait: a read alone would block on a hung browser)
                if left <= 0 or not select.select([self._read], [], [], left)[0]:
                    raise TimeoutError(f"no answer to {method} within {timeout} s")
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=30)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("out")
    p.add_argument("--busy", default="processing,pending",
                   help="comma-separated words that mean the page is still working")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1700)
    p.add_argument("--chromium", default="chromium")
    args = p.parse_args(argv)
    busy = [w for w in args.busy.split(",") if w]
    browser = Browser(args.chromium, args.width, args.height)
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target,
                               flatten=True)["sessionId"]
        browser.call("Emulation.setDeviceMetricsOverride", session, width=args.width,
                     height=args.height, deviceScaleFactor=1, mobile=False)
        browser.call("Page.navigate", session, url=args.url)
        check = ("(() => { const t = document.body ? document.body.innerText : '';"
                 f" const busy = {json.dumps(busy)};"
                 " return t.length > 0 && !busy.some(w => t.includes(w)); })()")
        deadline = time.monotonic() + args.timeout
        idle = 0
        while idle < 2:
            if time.monotonic() > deadline:
                sys.exit(f"error: {args.url} still busy ({', '.join(busy)}) after "
                         f"{args.timeout:.0f} s")
            time.sleep(1)
            done = browser.call("Runtime.evaluate", session, expression=check,
                                returnByValue=True)["result"].get("value")
            idle = idle + 1 if done else 0
        shot = browser.call("Page.captureScreenshot", session, format="png")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        temp = args.out + ".tmp"
        with open(temp, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        os.replace(temp, args.out)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
