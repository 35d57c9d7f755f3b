"""Fresh keys never repeat, in this process or in a child forked from it."""

from __future__ import annotations

import os

from engine.intake.limits import fresh_key


def test_keys_never_repeat_in_a_process() -> None:
    keys = [fresh_key() for _ in range(10_000)]
    assert len(set(keys)) == len(keys)


def test_a_forked_child_draws_its_own_keys() -> None:
    read, write = os.pipe()
    fresh_key()  # the parent's counter has moved on
    pid = os.fork()
    if pid == 0:  # the child: report its first key, then leave without pytest's cleanup
        os.write(write, fresh_key().encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_key = pipe.read()
    os.waitpid(pid, 0)
    parent_key = fresh_key()

    assert child_key.rsplit("-", 1)[0] != parent_key.rsplit("-", 1)[0]
