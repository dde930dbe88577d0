"""The benchmarks' network: an SMTP sink that only counts (aiosmtpd on
uvloop, in its own process, keeping each letter's Message-ID to prove
exactly-once delivery), and a TCP proxy that delays every chunk by a fixed
time each way, as a network does (pipelined commands travel together and
pay one round trip)."""

import asyncio
import collections
import multiprocessing
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sink_process(port: int, ready, stop, results, pipelining: bool, received) -> None:
    import uvloop
    from aiosmtpd.controller import Controller

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    ids: list[bytes] = []

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]] if pipelining else responses

        async def handle_DATA(self, server, session, envelope):
            content = envelope.original_content
            start = content.find(b"Message-ID:") + 11
            ids.append(content[start : content.find(b"\r\n", start)].strip())
            received.value += 1  # only this process writes it: no lock
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()
    results.put([i.decode() for i in ids])


class Sink:
    """`with Sink(pipelining=True) as sink:` ... `sink.ids` after the block."""

    def __init__(self, *, pipelining: bool = False) -> None:
        self.port = free_port()
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop, self.results = ctx.Event(), ctx.Event(), ctx.Queue()
        # What the benchmark watches while letters go (rather than querying
        # the database under test every few milliseconds).
        self.received = ctx.Value("q", 0, lock=False)
        args = (self.port, self.ready, self.stop, self.results, pipelining, self.received)
        self.process = ctx.Process(target=_sink_process, args=args, daemon=True)
        self.ids: list[str] = []

    def __enter__(self) -> "Sink":
        self.process.start()
        if not self.ready.wait(20):
            raise RuntimeError("the sink did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.ids = self.results.get(timeout=120)
        self.process.join(10)


class _Way:
    """One direction of a proxied connection: each chunk goes out `delay`
    seconds after it came in, in order; None closes the far side after what
    came before it. One timer at a time, for the oldest chunk: the proxy
    stands in for a network, which costs the box nothing, so it should take
    as little of the box's CPU as it can (a task and a queue per direction,
    as streams need, took half a millisecond a letter)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop, self.delay = loop, delay
        self.chunks: collections.deque = collections.deque()
        self.out: asyncio.Transport | None = None  # the far side, once connected
        self.timer: asyncio.TimerHandle | None = None

    def push(self, data: bytes | None) -> None:
        self.chunks.append((self.loop.time() + self.delay, data))
        self._schedule()

    def connected(self, out: asyncio.Transport) -> None:
        self.out = out
        self._schedule()

    def _schedule(self) -> None:
        if self.timer is None and self.chunks and self.out is not None:
            self.timer = self.loop.call_at(self.chunks[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.chunks and self.chunks[0][0] <= now:
            _, data = self.chunks.popleft()
            if data is None:
                self.out.close()
            elif not self.out.is_closing():
                self.out.write(data)
        self._schedule()


def _nodelay(transport: asyncio.Transport) -> None:
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _proxy_process(port: int, target: int, delay: float, ready, stop) -> None:
    import uvloop

    class Far(asyncio.Protocol):
        """The proxy's connection to the target: what it says goes back."""

        def __init__(self, back: _Way) -> None:
            self.back = back

        def data_received(self, data: bytes) -> None:
            self.back.push(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self.back.push(None)

    class Near(asyncio.Protocol):
        """A client's connection to the proxy."""

        def connection_made(self, transport: asyncio.Transport) -> None:
            loop = asyncio.get_running_loop()
            _nodelay(transport)
            self.there, self.back = _Way(loop, delay), _Way(loop, delay)
            self.back.connected(transport)
            self.connecting = loop.create_task(self._connect(loop, transport))  # kept: a task nobody holds may vanish

        async def _connect(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport) -> None:
            try:
                far, _ = await loop.create_connection(lambda: Far(self.back), "127.0.0.1", target)
            except OSError:
                transport.close()
                return
            _nodelay(far)
            self.there.connected(far)

        def data_received(self, data: bytes) -> None:
            self.there.push(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self.there.push(None)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Near, "127.0.0.1", port, backlog=1024)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        server.close()

    uvloop.run(main())


class DelayProxy:
    """Every chunk waits `delay` seconds on its way, in each direction: a
    round trip of 2 x delay."""

    def __init__(self, target: int, delay: float) -> None:
        self.port, self.delay = free_port(), delay
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop = ctx.Event(), ctx.Event()
        self.process = ctx.Process(target=_proxy_process, args=(self.port, target, delay, self.ready, self.stop))

    def __enter__(self) -> "DelayProxy":
        self.process.start()
        if not self.ready.wait(20):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.process.join(10)
