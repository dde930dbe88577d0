"""The benchmarks' network: an SMTP sink that only counts (aiosmtpd on
uvloop, in its own process, keeping each letter's Message-ID to prove
exactly-once delivery), and a TCP proxy that delays every chunk by a fixed
time each way, as a network does (pipelined commands travel together and
pay one round trip)."""

import asyncio
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


def _proxy_process(port: int, target: int, delay: float, ready, stop) -> None:
    import uvloop

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await chunks.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    writer.close()
                    return
                writer.write(data)

        delivering = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(65536):
                chunks.put_nowait((loop.time() + delay, data))
        except OSError:
            pass
        chunks.put_nowait((loop.time() + delay, None))
        await delivering

    async def accept(client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        for sock in (client_writer, server_writer):
            sock.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    async def main() -> None:
        server = await asyncio.start_server(accept, "127.0.0.1", port, backlog=1024)
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
