"""A stop signal that lands while circus's main thread writes to stderr: does the arbiter stop?

Run by test_aiida_daemon.py in a process of its own (it installs signal handlers and replaces
stderr). A real circus arbiter, watching a `sleep`, logs to stderr as the daemon service's does: a
line-buffered stream over a pipe. A callback on circus's loop writes to that stderr while the pipe
is full, so the write blocks with stderr's buffer locked; another thread sends SIGTERM to the main
thread once it sees the write blocked (`pipe_write` in /proc), then lets the pipe drain.

    python circus_signal_during_write.py [--patched]

`--patched` applies the daemon service's aiida_daemon_compat.handle_signals_on_the_loop() first.
Prints `the write failed: ERROR` and exits 2 if the write raised, prints `arbiter stopped` and
exits 0 once the arbiter stopped, exits 1 if it has not stopped within 120 s; then, after
`--- circus log ---`, what circus logged.
"""

import os
import signal
import sys
import tempfile
import threading
import time

import aiida_daemon_compat as compat

PATCHED = sys.argv[1:] == ['--patched']
CEILING = 120.0


class Pipe:
    """A pipe whose reader collects what arrives and can be paused with the pipe left full."""

    def __init__(self):
        self.read_end, self.write_end = os.pipe()
        self.received = []
        self.reading = threading.Event()
        self.reading.set()
        self.parked = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while chunk := os.read(self.read_end, 65536):
            self.received.append(chunk.replace(b'#', b'').replace(b'~', b''))
            if not self.reading.is_set():
                self.parked.set()
                self.reading.wait()

    def pause_full(self):
        """The reader parks after its next read (woken by one byte); then the pipe is filled."""
        self.reading.clear()
        os.write(self.write_end, b'#')
        self.parked.wait()
        os.set_blocking(self.write_end, False)
        try:
            while True:
                os.write(self.write_end, b'#' * 4096)
        except BlockingIOError:
            os.set_blocking(self.write_end, True)

    def resume(self):
        self.reading.set()

    def text(self) -> str:
        return b''.join(self.received).decode(errors='replace')


def main() -> int:
    if PATCHED:
        compat.handle_signals_on_the_loop()
    compat.quiet_conflicts_while_stopping()  # as the service does: a stopping arbiter's expected noise
    import circus
    from circus import logger as circus_logger
    from circus.util import configure_logger
    from tornado.ioloop import IOLoop

    out = sys.stdout
    pipe = Pipe()
    sys.stderr = open(pipe.write_end, 'w', buffering=1)  # line-buffered, as Python's stderr
    configure_logger(circus_logger, 'INFO', '-')  # circus's log to stderr, as in the foreground daemon
    sockets = tempfile.mkdtemp(prefix='circus-signal-')
    arbiter = circus.get_arbiter(
        [{'name': 'sleeper', 'cmd': 'sleep 600'}],
        controller=f'ipc://{sockets}/controller',
        pubsub_endpoint=f'ipc://{sockets}/pubsub',
        multicast_endpoint=None,
        statsd=False,
    )
    arbiter.loop = IOLoop.current()  # set here: an arbiter given its loop does not run it
    main_thread = threading.main_thread()

    def signal_once_the_write_blocks():
        wchan = f'/proc/self/task/{main_thread.native_id}/wchan'
        deadline = time.monotonic() + CEILING
        while 'pipe_write' not in open(wchan).read():
            if time.monotonic() > deadline:
                print('the write to stderr never blocked', file=out, flush=True)
                os._exit(1)
            time.sleep(0.01)
        signal.pthread_kill(main_thread.ident, signal.SIGTERM)
        time.sleep(0.2)
        pipe.resume()

    def write_to_stderr_when_signalled():
        pipe.pause_full()
        threading.Thread(target=signal_once_the_write_blocks, daemon=True).start()
        try:
            sys.stderr.write('~' * 1000 + '\n')
        except RuntimeError as error:
            print(f'the write failed: {error}', file=out, flush=True)
            finish(2)

    def finish(code: int):
        time.sleep(0.2)  # the last lines through the pipe
        print('--- circus log ---', pipe.text(), sep='\n', file=out, flush=True)
        os._exit(code)

    def not_stopped():
        print(f'the arbiter did not stop within {CEILING:.0f} s', file=out, flush=True)
        finish(1)

    arbiter.loop.call_later(0.5, write_to_stderr_when_signalled)
    threading.Timer(CEILING, not_stopped).start()
    arbiter.start()  # returns once the arbiter stopped
    print('arbiter stopped', file=out, flush=True)
    finish(0)


if __name__ == '__main__':
    sys.exit(main())
