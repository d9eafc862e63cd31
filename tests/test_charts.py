"""Charts draw only what was measured: a node down or unread is a gap with a labelled band, never
a line across it; the scenario report says how often lag was sampled. Pure drawing logic on
real matplotlib axes, and one real scenario run with a standby stopped half-way."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from lab.replication.lagplot import draw_series, gaps, runs  # noqa: E402
from lab.scenario import report  # noqa: E402
from lab.scenario.runner import RunResult  # noqa: E402


def test_runs_break_at_unmeasured_samples_and_missed_ticks():
    ts = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.5, 1.6]
    ok = [True, True, False, False, True, True, True, True]
    assert runs(ts, ok, max_gap=0.25) == [(0, 1), (4, 5), (6, 7)]          # 0.5 -> 1.5: ticks missed
    assert gaps(ts, ok, max_gap=0.25) == [(0.1, 0.4), (0.5, 1.5)]
    assert gaps([0.0, 0.1], [False, False], 0.25) == [(0.0, 0.1)]            # never measured
    assert gaps([0.0, 0.1, 0.2], [True, True, False], 0.25) == [(0.1, 0.2)]  # lost at the end
    assert gaps([0.0, 0.1], [True, True], 0.25, end=2.0) == [(0.1, 2.0)]     # recording went on, samples did not


def test_no_line_crosses_a_gap():
    fig, ax = plt.subplots()
    ts = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5]
    vals = [1.0, 2.0, None, None, 5.0, 6.0]
    draw_series(ax, ts, vals, [v is not None for v in vals], max_gap=0.75, label="s1")
    xs = [list(line.get_xdata()) for line in ax.lines]
    plt.close(fig)
    assert xs == [[0.0, 0.3], [1.2, 1.5]]         # two lines, none from 0.3 to 1.2


def _result(samples) -> RunResult:
    return RunResult("t", "t.yaml", "", "local", "lab", samples[0]["t"], samples[-1]["t"], samples=samples)


def test_scenario_chart_marks_a_down_standby_and_the_report_states_the_rate(tmp_path):
    samples = []
    for i in range(30):
        t = 1000.0 + 0.34 * i
        s = {"t": t, "primary": "p1", "writes_ok": 10 * i, "s1.state": "standby", "s2.state": "standby",
             "s2.replay_lag_bytes": 0, "s2.replay_lag_s": 0.01}
        if 10 <= i < 20:
            s["s1.state"] = "down"                  # no s1 figures while it is down
        else:
            s.update({"s1.replay_lag_bytes": 1000 * i, "s1.replay_lag_s": 0.007})
        samples.append(s)
    res = _result(samples)
    text = report.sampling(res)
    assert "every 0.34 s" in text and "2.9 Hz" in text and "not measured" in text
    # the chart's s1 lines stop at the last sample before it went down and resume after
    fig, ax = plt.subplots()
    ts, vals, states = report._node_series(res, "s1", ".replay_lag_bytes", 1000.0)
    draw_series(ax, ts, vals, [v is not None for v in vals], 2.5 * report.sample_spacing(res))
    spans = [(min(line.get_xdata()), max(line.get_xdata())) for line in ax.lines]
    plt.close(fig)
    assert spans == [(pytest.approx(0.0), pytest.approx(0.34 * 9)), (pytest.approx(0.34 * 20), pytest.approx(0.34 * 29))]
    assert gaps(ts, [v is not None for v in vals], 2.5 * 0.34) == [(pytest.approx(0.34 * 9), pytest.approx(0.34 * 20))]
    chart = report.write_chart(res, tmp_path / "chart.png")
    assert chart.stat().st_size > 10_000
    assert report.sampling(res) in report.markdown(res, chart.name)
