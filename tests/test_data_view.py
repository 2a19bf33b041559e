"""``robostack data view --save``: a Rerun recording of one episode that the Rerun SDK reads back, with the
camera, the observation and action curves by element name, the takeover events and the outcome."""

from __future__ import annotations

import numpy as np

from robostack.data import EpisodeStore

from conftest import assert_one_line_error, run_cli


def test_view_saves_a_recording_rerun_reads_back(tmp_path):
    import rerun.dataframe as rd

    from robostack.data.schema import FeatureSpec, StoreInfo
    from robostack.data.store import EpisodeWriter

    demos = tmp_path / "cam.zarr"
    run_cli("sim", "demos", "--task", "push", "--episodes", "1", "--out", tmp_path / "p.zarr", check=True)
    src = EpisodeStore(tmp_path / "p.zarr")
    ep = src.read_episode(0)
    feats = {k: src.info.features[k] for k in ("obs/state", "action")}
    feats["obs/image_top"] = FeatureSpec("uint8", (16, 16, 3))
    ep["obs/image_top"] = np.zeros((len(ep["action"]), 16, 16, 3), np.uint8)
    with EpisodeWriter.create(demos, StoreInfo(control_rate_hz=20.0, features=feats)) as w:
        w.add_episode({k: ep[k] for k in feats}, success=True, source="sim", task="push", seed=0)
    rrd = tmp_path / "ep.rrd"
    proc = run_cli("data", "view", demos, "--episode", "0", "--save", rrd)
    assert proc.returncode == 0, proc.stderr
    n = len(ep["action"])
    table = rd.load_recording(str(rrd)).view(index="step", contents="/**").select().read_all()
    cols = table.column_names
    assert table.num_rows == n
    assert any(c.startswith("/obs/image_top:") for c in cols), cols
    assert "/action/vx_cmd:Scalar" in cols and "/obs/state/pusher_x:Scalar" in cols
    xs = np.array(
        [v[0] if v is not None else np.nan for v in table.column("/action/vx_cmd:Scalar").to_pylist()]
    )
    np.testing.assert_allclose(xs, EpisodeStore(demos).read("action")[:, 0], rtol=1e-6)
    texts = [t for v in table.column("/events:Text").to_pylist() if v for t in v]
    assert any("success" in t for t in texts), texts


def test_view_marks_takeovers(tmp_path):
    from robostack.data.schema import FeatureSpec, StoreInfo
    from robostack.data.store import EpisodeWriter

    feats = {"action": FeatureSpec("float32", (2,)), "is_intervention": FeatureSpec("bool", ())}
    with EpisodeWriter.create(tmp_path / "s.zarr", StoreInfo(control_rate_hz=20.0, features=feats)) as w:
        flags = np.array([0, 0, 1, 1, 0, 0], bool)
        w.add_episode({"action": np.zeros((6, 2), np.float32), "is_intervention": flags}, success=False,
                      source="intervention", task="push", seed=0)  # fmt: skip
    import rerun.dataframe as rd

    assert run_cli("data", "view", tmp_path / "s.zarr", "--save", tmp_path / "s.rrd").returncode == 0
    table = rd.load_recording(str(tmp_path / "s.rrd")).view(index="step", contents="/**").select().read_all()
    texts = [t for v in table.column("/events:Text").to_pylist() if v for t in v]
    assert texts[:2] == ["human takes over", "policy back in control"] and "failure" in texts[-1]
    assert_one_line_error(run_cli("data", "view", tmp_path / "s.zarr", "--episode", "3"), "out of range")
