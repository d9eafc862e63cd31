"""`pglab fault delay NODE 20ms`: netem where the kernel has it; where it has none (this kind of
machine), one line saying what, why and what to do instead, exit 2, and nothing changed."""
from __future__ import annotations

import os
import statistics
import time

import psycopg
import pytest
from typer.testing import CliRunner

from lab.cli import app
from lab.model import state as lab_state
from lab.runtime import netns

from .test_bad_input import fails_cleanly

runner = CliRunner()


def _kernel_has_netem() -> bool:
    if os.geteuid() != 0:
        pytest.skip("checking the kernel for netem needs root (a scratch network namespace)")
    return netns.netem_probe("probe") is None


def _rtt_ms(lab, node: str, n: int = 15) -> float:
    with psycopg.connect(lab.dsn(node), autocommit=True) as c:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            c.execute("SELECT 1")
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def test_delay_without_netem_says_so_in_one_line(make_lab):
    if _kernel_has_netem():
        pytest.skip("this kernel has netem: test_delay_adds_latency covers it")
    lab = make_lab(standbys=1)
    line = fails_cleanly(["fault", "delay", "s1", "20ms", "--name", lab.name], "this kernel has no netem qdisc")
    assert "cannot add latency to s1" in line and "pglab fault throttle s1" in line
    # nothing changed: no fault in force, no event on the timeline, s1 still streaming
    st = lab_state.load(lab.name)
    assert "delay" not in st.faults.get("s1", []) and not any(e["kind"] == "fault:delay" for e in st.events)
    assert lab.status().node("s1").stream_state == "streaming"
    assert "pglab-netem-probe" not in os.popen("ip netns list").read()     # the probe left nothing


@pytest.mark.root
def test_delay_adds_latency(make_lab, runtime):
    if not _kernel_has_netem():
        pytest.skip("this kernel has no netem (test_delay_without_netem_says_so_in_one_line covers it)")
    lab = make_lab(standbys=1, netns=(runtime == "local"))
    before = _rtt_ms(lab, "s1")
    res = runner.invoke(app, ["fault", "delay", "s1", "20ms", "--name", lab.name])
    assert res.exit_code == 0, res.output
    try:
        # the reply to each query waits 20 ms on the way out of s1; 15 ms leaves room for timer slack
        assert _rtt_ms(lab, "s1") >= before + 15
    finally:
        lab.heal("s1")
    assert _rtt_ms(lab, "s1") < before + 15


def test_delay_needs_a_latency_with_its_unit(shared_lab):
    fails_cleanly(["fault", "delay", "s1", "--name", shared_lab.name], "invalid latency None")
    fails_cleanly(["fault", "delay", "s1", "20", "--name", shared_lab.name], "invalid latency '20'")
    fails_cleanly(["fault", "kill", "s1", "20ms", "--name", shared_lab.name], "kill takes no latency")
