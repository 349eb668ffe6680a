"""The server's watch on its kernels' activity (companion.kernels), which the culling and the pause go by.

:class:`CompanionKernelManager` reads of each message a kernel publishes only
its type, the type of the request it answers and a status's state
(:func:`activity_of`): a real kernel, started by the manager, shows that the
execution state and the last activity still follow Jupyter's rule.
"""

from __future__ import annotations

import asyncio
import time

from jupyter_client.session import Session
from traitlets.config import Config

from companion.forking import use_forking
from companion.kernels import CompanionKernelManager, activity_of
from conftest import run_in_own_loop


def frames(session: Session, msg_type: str, content: dict, parent: dict | None = None) -> list[bytes]:
    """A message as a kernel publishes it on IOPub (a topic frame first)."""
    return [b"kernel.x." + msg_type.encode(), *session.serialize(session.msg(msg_type, content, parent=parent))]


def test_activity_of_reads_the_type_the_request_answered_and_a_status():
    session = Session(key=b"kernel-key")
    request = session.msg("execute_request", {"code": "1"})
    assert activity_of(session, frames(session, "status", {"execution_state": "busy"}, request)) == ("status", "execute_request", "busy")
    assert activity_of(session, frames(session, "comm_msg", {"comm_id": "c", "data": {}}, request)) == ("comm_msg", "execute_request", None)
    assert activity_of(session, frames(session, "stream", {"name": "stdout", "text": "x"})) == ("stream", None, None)


def test_a_message_not_signed_with_the_kernels_key_or_cut_short_is_not_counted():
    session = Session(key=b"kernel-key")
    stranger = Session(key=b"another-key")
    assert activity_of(session, frames(stranger, "status", {"execution_state": "busy"})) is None
    assert activity_of(session, frames(session, "status", {"execution_state": "busy"})[:-2]) is None
    assert activity_of(session, [b"not", b"a message"]) is None


def test_the_kernels_state_and_last_activity_follow_what_it_publishes(tmp_path, own_provisioner_factory, fresh_zygote):
    async def run():
        # Forked, as a page's kernel is (the default on Linux).
        manager = CompanionKernelManager(root_dir=str(tmp_path), config=Config(use_forking({})))
        kernel_id = await manager.start_kernel()
        kernel = manager.get_kernel(kernel_id)
        assert type(kernel.provisioner).__name__ == "ForkingProvisioner"
        client = kernel.client()
        client.start_channels()

        async def settled(state: str) -> None:
            for _ in range(300):
                if kernel.execution_state == state:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"kernel state stayed {kernel.execution_state!r}, not {state!r}")

        async def watched() -> None:
            """Until the server's watch on the kernel has seen a status, ask the kernel for its information.

            ZeroMQ joins a subscriber when its connection is made, which may be a
            retry after the test's own client has joined: the replies to
            ``wait_for_ready`` can pass the watch by (Jupyter's websocket nudges a
            kernel the same way)."""
            for _ in range(100):
                if kernel.execution_state != "starting":
                    return
                await client.kernel_info(reply=True)
                await asyncio.sleep(0.1)
            raise AssertionError("the server's watch saw no status from the kernel in 100 requests")

        try:
            await client.wait_for_ready(timeout=120)
            await watched()  # "starting" until a status arrives
            await settled("idle")

            # A request for information only is not activity: the last activity stays where it was.
            await asyncio.sleep(0.3)
            quiet = kernel.last_activity
            await client.kernel_info(reply=True)
            await asyncio.sleep(0.5)
            assert kernel.last_activity == quiet

            # Running code is: busy while it runs, idle after, the last activity moved on.
            started = time.monotonic()
            running = asyncio.ensure_future(client.execute_interactive("import time; time.sleep(1.5)", timeout=60))
            await settled("busy")
            assert time.monotonic() - started < 1.5, "busy while the cell runs"
            await running
            await settled("idle")
            assert kernel.last_activity > quiet
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(kernel_id, now=True)

    run_in_own_loop(run)
