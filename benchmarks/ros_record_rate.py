"""recorder_node throughput: two 640x480 RGB cameras at 30 Hz plus joint states over real DDS, recorded into the
crash-safe store at 30 Hz. Reports the steps per second the recorder committed and what the publisher achieved.
Writes benchmarks/results/ros_record_rate.md/json.

    .venv/bin/python benchmarks/ros_record_rate.py [--seconds 10] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rclpy
import rclpy.executors
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from robostack.data import EpisodeStore

TOPIC_MAP = """
observations:
  obs/state: {topic: /r/joint_states, type: joint_state, joints: [j1, j2, j3, j4, j5, j6, j7], fields: [position]}
  obs/image_front: {topic: /r/front/image_raw, type: image}
  obs/image_wrist: {topic: /r/wrist/image_raw, type: image}
command: {type: float64_array, topic: /r/commands}
"""
H, W, RATE = 480, 640, 30.0


def call(ex, client, req, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if client.wait_for_service(timeout_sec=1.0):
            fut = client.call_async(req)
            while not fut.done() and time.monotonic() < end:
                ex.spin_once(timeout_sec=0.01)
            if fut.done() and fut.result().success:
                return fut.result()
    raise RuntimeError(f"service call failed: {client.srv_name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ros-record-"))
    (work / "map.yaml").write_text(TOPIC_MAP)
    domain = random.randint(1, 200)
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    cmd = [sys.executable, "-m", "robostack.ros.recorder_node", "--ros-args", "-p", f"store:={work / 'rec.zarr'}",
           "-p", f"topic_map:={work / 'map.yaml'}", "-p", f"rate_hz:={RATE}", "-p", "action_topic:=/r/commands"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    rclpy.init(domain_id=domain)
    node = rclpy.create_node("record_bench")
    ex = rclpy.executors.SingleThreadedExecutor()
    ex.add_node(node)
    pubs = {k: node.create_publisher(Image, f"/r/{k}/image_raw", 5) for k in ("front", "wrist")}
    js = node.create_publisher(JointState, "/r/joint_states", 10)
    act = node.create_publisher(Float64MultiArray, "/r/commands", 10)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8).tobytes() for _ in range(4)]
    sent = {"n": 0}

    def publish() -> None:
        data = frames[sent["n"] % len(frames)]
        for p in pubs.values():
            p.publish(Image(height=H, width=W, encoding="rgb8", step=W * 3, data=data))
        js.publish(JointState(name=[f"j{i}" for i in range(1, 8)], position=[0.1] * 7))
        act.publish(Float64MultiArray(data=[0.0] * 7))
        sent["n"] += 1

    node.create_timer(1.0 / RATE, publish)
    start = node.create_client(Trigger, "/recorder_node/start")
    stop = node.create_client(SetBool, "/recorder_node/stop")
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.01)
        call(ex, start, Trigger.Request())
        n0, t0 = sent["n"], time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            ex.spin_once(timeout_sec=0.005)
        res = call(ex, stop, SetBool.Request(data=True))
        pub_rate = (sent["n"] - n0) / (time.monotonic() - t0)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        proc.terminate()
        proc.wait(timeout=10)
    store = EpisodeStore(work / "rec.zarr")
    steps = store.episodes()[0].length
    ts = store.read("timestamp")
    rate = (len(ts) - 1) / float(ts[-1] - ts[0])
    result = {"seconds": args.seconds, "steps": int(steps), "recorded_hz": round(rate, 2),
              "published_hz": round(pub_rate, 2), "target_hz": RATE, "stop_message": res.message,
              "image_bytes_per_s": round(2 * H * W * 3 * rate)}  # fmt: skip
    print(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ros_record_rate.json").write_text(json.dumps(result, indent=1))
    (out / "ros_record_rate.md").write_text(
        f"# recorder_node throughput ({time.strftime('%Y-%m-%d')})\n\n"
        f"Two 640x480 rgb8 cameras + 7 joint states + action, published at {pub_rate:.1f} Hz over FastDDS, recorded at "
        f"{rate:.1f} Hz (target {RATE:g}) for {args.seconds:g} s: {steps} steps committed "
        f"({result['image_bytes_per_s'] / 1e6:.0f} MB/s of raw images).\n"
    )


if __name__ == "__main__":
    main()
