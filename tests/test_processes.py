"""Training on two processes (torchrun, gloo on CPU): the same losses as one process with the
same global batch, the teacher cache built once, and nothing written by the second process
except what the Trainer itself keeps per process for resuming.

Each job is a real `python -m torch.distributed.run --nproc_per_node=2` subprocess; the
processes record their own writes (tests/_launched.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from zoo import make_tiny_bert, tiny_recipe, write_cls_files

HERE = Path(__file__).resolve().parent
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
# Two processes average two half-batch gradients where one process takes the gradient of the
# whole batch: equal up to float rounding (~1e-7). Adam divides every gradient by its running
# size, which turns that rounding in near-zero gradients into whole steps (runs drifted apart
# by 1e-5 in 16 steps), so the comparisons train with plain SGD, which keeps it at rounding.
# In float32: bfloat16 autocast (on by default where the CPU has it, as an AVX-512 BF16 Xeon
# does) rounds to 8 bits of mantissa, and the two splits of a batch then differ by 3e-5.
PLAIN_SGD = dict(optim="sgd", learning_rate=0.2, warmup_ratio=0.0, weight_decay=0.0, bf16="off")


def torchrun(
    tmp_path: Path, root: Path, function: str, pause_per_step: float = 0, processes: int = 2,
    **kwargs,
):  # fmt: skip
    """`function(**kwargs)` on two processes under torchrun (one: a plain python process, as
    a user runs it), started (a Popen), and the folder where each process records its pid and
    its writes under `root`. Each gets one thread, whatever the test process has set."""
    logs = tmp_path / f"writes-{len(list(tmp_path.glob('writes-*')))}"
    logs.mkdir()
    job = logs / "job.json"
    job.write_text(
        json.dumps({"function": function, "kwargs": kwargs, "pause_per_step": pause_per_step})
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable]
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command += [str(HERE / "_launched.py"), str(logs), str(root), str(job)]
    job = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return job, logs


def launch(tmp_path: Path, root: Path, function: str, processes: int = 2, **kwargs):
    """Run `function(**kwargs)` on `processes` processes; each one's writes under `root`."""
    job, logs = torchrun(tmp_path, root, function, processes=processes, **kwargs)
    output, _ = job.communicate(timeout=600)
    assert job.returncode == 0, output[-6000:]
    ranks = [str(r) for r in range(processes)]
    return {r: json.loads((logs / f"writes-{r}.json").read_text()) for r in ranks}


def outside_trainer_checkpoints(writes: list) -> list:
    """Writes other than the Trainer's own in its checkpoint directory (every process keeps
    its random state there, rng_state_<rank>.pth, to resume exactly)."""
    return [w for w in writes if ".checkpoints" not in w[1]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("processes")
    teacher = make_tiny_bert(root / "teacher", **NO_DROPOUT)
    data = write_cls_files(root / "data", n_train=64, n_val=16, n_test=16)
    return root, teacher, data


def test_two_processes_train_like_one_and_only_the_main_one_writes(setup, tmp_path):
    import torch
    from safetensors.torch import load_file

    root, teacher, data = setup
    common = dict(
        student="truncate:0", losses="kl=0.5,ce=0.5", epochs=2, shuffle=False,
        logging_steps=1, progress=False, seed=3, **PLAIN_SGD,
    )  # fmt: skip
    work = root / "two"
    out2, cache2 = work / "student", work / "cache"
    writes = launch(
        tmp_path, work.parent, "pocketsize.distill:distill",
        teacher=str(teacher), data=str(data), out=str(out2), cache_dir=str(cache2),
        batch_size=4, **common,
    )  # fmt: skip
    out1 = root / "one" / "student"
    launch(
        tmp_path, out1.parent, "pocketsize.distill:distill", processes=1,
        teacher=str(teacher), data=str(data), out=str(out1), cache_dir=str(out1.parent / "cache"),
        batch_size=8, **common,
    )  # fmt: skip

    two = json.loads((out2 / "stage.json").read_text())
    one = json.loads((out1 / "stage.json").read_text())
    assert two["config"]["processes"] == 2 and one["config"]["processes"] == 1
    assert two["cache"]["key"] == one["cache"]["key"]  # the same teacher outputs
    assert two["steps"] == one["steps"] == 2 * 64 // 8
    assert len(two["losses"]) == len(one["losses"]) == one["steps"]
    for part in ("loss_kl", "loss_ce"):  # logged to 6 places (the Trainer's total to 4)
        losses2 = [e[part] for e in two["losses"]]
        losses1 = [e[part] for e in one["losses"]]
        assert losses2 == pytest.approx(losses1, abs=1e-5), (part, losses2, losses1)
    # the same weights at the end, and far from where they started (the teacher's layer 0):
    # equal losses of a model that did not move would prove little
    w2, w1, w0 = (load_file(str(d / "model.safetensors")) for d in (out2, out1, teacher))
    for name, tensor in w1.items():
        assert torch.allclose(w2[name], tensor, atol=1e-5), name
    moved = max((w1[n] - w0[n]).abs().max().item() for n in w1 if n in w0)
    assert moved > 1e-3, moved

    assert two["cache"]["used"] and two["cache"]["computed_by_processes"] == 1
    assert len(list(cache2.iterdir())) == 1
    assert outside_trainer_checkpoints(writes["1"]) == []
    main_writes = outside_trainer_checkpoints(writes["0"])
    assert any(w[1].startswith(str(cache2)) for w in main_writes)
    assert any(w[0] == "os.rename" and w[1] == str(out2) for w in main_writes)
    # what the second process did do: make the Trainer's checkpoint directories (its random
    # state goes in there, through torch.save's C++ writer, which no audit event shows)
    assert writes["1"] and {(w[0], Path(w[1]).parent.name) for w in writes["1"]} == {
        ("os.mkdir", ".student.checkpoints")
    }, writes["1"]
    assert not list(work.glob(".*checkpoints")), "checkpoints of a finished run remain"


def test_recipe_on_two_processes(setup, tmp_path):
    root, teacher, data = setup
    run_dir = root / "runs" / "tiny"
    recipe = tiny_recipe(teacher, data)  # test_recipe.py's chain, recovering after pruning
    recipe["prune"].update(recover=True, recover_options={"max_steps": 3, "batch_size": 8})
    recipe["eval"].pop("baselines")
    writes = launch(
        tmp_path, run_dir.parent, "pocketsize.recipe:run_recipe",
        source=recipe, run_dir=str(run_dir),
    )  # fmt: skip
    assert outside_trainer_checkpoints(writes["1"]) == []
    for stage in ("teacher", "student", "pruned", "onnx", "int8"):
        record = json.loads((run_dir / stage / "stage.json").read_text())
        assert record["recipe"]["fingerprint"], stage
    for stage in ("teacher", "student"):
        own = json.loads((run_dir / stage / "stage.json").read_text())
        assert own["config"]["processes"] == 2, stage
    pruning = json.loads((run_dir / "pruned" / "stage.json").read_text())
    assert "recovery" in pruning
    report = json.loads((run_dir / "metrics.json").read_text())
    assert set(report["variants"]) >= {"teacher", "student", "pruned", "onnx", "int8"}


def test_killed_two_process_job_resumes_to_the_same_weights(setup, tmp_path):
    from safetensors.torch import load_file

    root, teacher, data = setup
    common = dict(
        student="truncate:0", losses="kl=0.5,ce=0.5", epochs=2, shuffle=False, save_steps=1,
        progress=False, seed=5, teacher=str(teacher), data=str(data), **PLAIN_SGD,
    )  # fmt: skip
    out = root / "killed" / "student"
    job, logs = torchrun(
        tmp_path, out.parent, "pocketsize.distill:distill", pause_per_step=1.0,
        out=str(out), batch_size=4, **common,
    )  # fmt: skip
    checkpoints = out.parent / ".student.checkpoints"
    deadline = time.time() + 300
    while not (checkpoints / "checkpoint-3").is_dir():
        assert job.poll() is None and time.time() < deadline, "the job ended before step 3"
        time.sleep(0.05)
    time.sleep(0.3)  # checkpoint-3 complete, step 4 sleeping
    # kill -9 of torchrun and of both trainers (torchrun puts them in sessions of their own)
    for pid in [job.pid] + [int((logs / f"pid-{r}").read_text()) for r in ("0", "1")]:
        os.kill(pid, signal.SIGKILL)
    job.wait()
    assert not out.exists(), "a killed job must leave no finished-looking output"

    launch(tmp_path, out.parent, "pocketsize.distill:distill", out=str(out), batch_size=4,
           resume=True, **common)  # fmt: skip
    record = json.loads((out / "stage.json").read_text())
    assert record["resumed_from"] and record["resumed_from"].endswith("checkpoint-3")
    straight = root / "straight" / "student"
    launch(tmp_path, straight.parent, "pocketsize.distill:distill", processes=1,
           out=str(straight), batch_size=8, **common)  # fmt: skip
    w_resumed, w_straight = (load_file(str(d / "model.safetensors")) for d in (out, straight))
    for name, tensor in w_straight.items():
        assert (w_resumed[name] - tensor).abs().max().item() < 1e-5, name
