"""``accelerate launch --cpu --num_processes N`` starts one process in Accelerate 1.x: pretraining
says so in one line and names the command that starts N (``--multi_gpu``, gloo on CPUs)."""
from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from pretrain.launch import requested_processes, single_process_warning
from test_pretrain import MICRO, free_port, subprocess_env

#: What Accelerate's simple launcher sets for `accelerate launch --cpu --num_processes 2`.
CPU_LAUNCH = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
LAUNCHER = ["/usr/bin/python", "/usr/local/bin/accelerate", "launch", "--cpu", "--num_processes", "2", "-m", "pretrain"]
ARGV = ["/repo/pretrain/__main__.py", "--data", "synthetic", "--output-dir", "runs/my run"]


def test_the_warning_names_the_command_that_works():
    assert single_process_warning(CPU_LAUNCH, LAUNCHER, ARGV) == (
        "warning: `accelerate launch --cpu --num_processes 2` starts ONE process (Accelerate runs several only "
        "with --multi_gpu, which trains over gloo on a host without a GPU); for 2 CPU processes run: "
        "accelerate launch --multi_gpu --num_processes 2 -m pretrain --data synthetic --output-dir 'runs/my run'")


@pytest.mark.parametrize("environ,launcher", [
    ({}, LAUNCHER),                                                               # plain `python -m pretrain`
    ({**CPU_LAUNCH, "ACCELERATE_USE_CPU": "False"}, LAUNCHER),                    # a GPU launch
    ({k: v for k, v in CPU_LAUNCH.items() if k != "MASTER_ADDR"}, None),          # --cpu, one process asked
    ({**CPU_LAUNCH, "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, LAUNCHER),             # --multi_gpu: one of two
    ({**CPU_LAUNCH, "PMI_SIZE": "2"}, LAUNCHER),                                  # MPI
    (CPU_LAUNCH, [*LAUNCHER[:4], "--num_processes=1"]),                           # one asked for
])
def test_no_warning_when_the_launch_is_right(environ, launcher):
    assert single_process_warning(environ, launcher or ["x"], ARGV) is None


def test_the_count_comes_from_the_launcher_or_is_left_open():
    assert requested_processes(["accelerate", "launch", "--num-processes=4", "train.py"]) == 4
    assert requested_processes(["accelerate", "launch", "--num_processes", "x"]) is None
    assert requested_processes(["accelerate", "launch", "train.py"]) is None
    line = single_process_warning(CPU_LAUNCH, ["accelerate", "launch", "--cpu", "my_train.py"], ["my_train.py", "-v"])
    assert line.endswith("accelerate launch --multi_gpu --num_processes N my_train.py -v")


def test_a_real_cpu_launch_of_two_warns_once(tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "-m", "pretrain", *MICRO, "--output-dir", str(tmp_path / "run"), "train.max_steps=1", "train.eval_every=0"]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, proc.stderr
    assert warnings[0].startswith("warning: `accelerate launch --cpu --num_processes 2` starts ONE process")
    assert warnings[0].endswith("accelerate launch --multi_gpu --num_processes 2 -m pretrain "
                                + shlex.join([*MICRO, "--output-dir", str(tmp_path / "run"), "train.max_steps=1",
                                              "train.eval_every=0"]))
    assert "1 process(es) on cpu" in proc.stdout  # what the warning is about
