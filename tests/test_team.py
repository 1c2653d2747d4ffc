"""A team's set-up, on one machine over loopback (docs/team.md): a shared MLflow tracking server (artifacts
proxied to a folder; sqlite behind it, PostgreSQL under `slow`) that survives restarts mid-training,
experiments shared between clones through a bare git remote and a local-directory DVC remote, training on
two nodes with torchrun, a study sharded over two clones that meets in one server and one `dvc exp show`, and
a health probe that asks a remote server once per burst of deliveries."""

import contextlib
import copy
import io
import json
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline import checkpoint
from pipeline.config import logged_params, parse_params
from pipeline.stages import train
from pipeline.studies import report
from pipeline.tracker import HEALTH_TTL_S, Tracker
from pipeline.tracking import FINGERPRINT_TAG, fluent_store
from tests.helpers import REPO, env, make_repo, png_bytes, run, run_stages
from tests.servers import free_port, mlflow_server, postgres, wait_until

INJECT = REPO / "tests" / "inject"
EXPERIMENT = "cyclegan-pipeline"


# --- what a complete run is ---------------------------------------------------------------------------

def artifacts(client, run_id: str, folder: str | None = None) -> set[str]:
    """Every file of the run, as paths."""
    found = set()
    for a in client.list_artifacts(run_id, folder):
        found |= artifacts(client, run_id, a.path) if a.is_dir else {a.path}
    return found


def assert_curve_complete(client, run_id: str, losses: pd.DataFrame) -> None:
    """The run's train/* histories are losses.csv: every logged row exactly once, at its step."""
    for column in losses.columns.drop(["step", "epoch"]):
        history = sorted(client.get_metric_history(run_id, f"train/{column}"), key=lambda m: (m.step, m.timestamp))
        assert [m.step for m in history] == losses["step"].tolist(), column
        assert np.allclose([m.value for m in history], losses[column], rtol=1e-6), column


TRAINING_FILES = {"losses.csv", "samples.png", "checkpoint/model.pt", "samples/epoch_001.png", "samples/epoch_002.png"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def server(request, tmp_path):
    """A tracking server on loopback for the test; its backend a sqlite file, or PostgreSQL."""
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(postgres()) if request.param == "postgresql" else None
        yield stack.enter_context(mlflow_server(tmp_path / "server", backend))


# --- 1. the tracking server ----------------------------------------------------------------------------

@pytest.mark.long
def test_everything_a_run_records_lands_on_the_tracking_server(server, make_params, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)  # over params' own (sqlite) store
    p = make_params(mlflow__study="ablation", mlflow__config="full")
    run_id = run_stages(p)["train"]["mlflow_run_id"]
    client = mlflow.MlflowClient(tracking_uri=server.uri)
    r = client.get_run(run_id)
    assert r.info.status == "FINISHED" and r.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert r.data.params == {k: str(v) for k, v in logged_params(p).items()}
    assert {r.data.tags[k] for k in ("study", "config", "seed")} == {"ablation", "full", "0"}
    assert_curve_complete(client, run_id, pd.read_csv(Path(p.paths.train_reports) / "losses.csv"))
    evaluated = json.loads((Path(p.paths.eval_reports) / "metrics.json").read_text())
    assert r.data.metrics["eval/fid_AtoB"] == pytest.approx(evaluated["fid_AtoB"])  # the later stage, same run
    files = artifacts(client, run_id)
    assert TRAINING_FILES | {"eval/metrics.json", "eval/protocol.json"} <= files
    # proxied: the files are in the server's folder, the client wrote nothing beside its store
    assert (server.artifacts / "1" / run_id / "artifacts" / "losses.csv").is_file()

    image = tmp_path / "new.png"
    image.write_bytes(png_bytes(7, (36, 28)))
    with fluent_store(server.uri):
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/generator_AtoB")
    out = model.predict(pd.DataFrame({"image": [image.read_bytes()]}))["image"][0]
    r2 = subprocess.run([sys.executable, "-m", "pipeline.tools.translate", str(image), "--model",
                         f"runs:/{run_id}/generator_AtoB", "--out", str(tmp_path / "out"), "--no-progress"],
                        env={**env(), "MLFLOW_TRACKING_URI": server.uri}, capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr[-3000:]
    tool = np.asarray(Image.open(tmp_path / "out" / "new.png"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out))), tool) and tool.shape == (28, 36, 3)

    runs, _ = report.collect(server.uri, EXPERIMENT, "ablation")  # the study report reads the server
    assert runs["run_id"].tolist() == [run_id]


# --- 2. faults: the server restarts during a training, or is down at its end ---------------------------

def start_paused_training(params: dict, tmp_path: Path, uri: str, steps: str) -> tuple[subprocess.Popen, Path]:
    """The train stage in a child process that holds before the given steps (tests/inject: pause)."""
    file, pause = tmp_path / "params.yaml", tmp_path / "pause"
    file.write_text(yaml.safe_dump(params))
    pause.mkdir()
    log = (tmp_path / "train.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.stages.train", "--params", str(file)], cwd=REPO,
                            env={**env(), "MLFLOW_TRACKING_URI": uri, "PIPELINE_FAULT": f"pause:{steps}",
                                 "PIPELINE_PAUSE_DIR": str(pause), "PYTHONPATH": str(INJECT)},
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, pause


def at_step(proc: subprocess.Popen, pause: Path, step: int) -> None:
    wait_until(lambda: (pause / f"at-{step}").exists() or proc.poll() is not None, f"step {step}", 300)
    assert proc.poll() is None, f"the training ended before step {step}"


def finished_run(client, fingerprint: str):
    exp = client.get_experiment_by_name(EXPERIMENT)
    (r,) = client.search_runs([exp.experiment_id], f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}'")
    return r


@pytest.mark.long
@pytest.mark.parametrize("model", ["cyclegan", pytest.param("cut", marks=pytest.mark.slow)])
def test_a_server_restarted_mid_training_ends_with_the_whole_run(params_dict, tmp_path, model):
    params_dict = {**params_dict, "model": model}
    run_stages(parse_params(params_dict), "download", "prepare")  # 12 steps, checkpoints every 3, epochs of 6
    with mlflow_server(tmp_path / "server") as server:
        proc, pause = start_paused_training(params_dict, tmp_path, server.uri, "4,10")
        at_step(proc, pause, 4)
        server.stop()  # down through the checkpoints of steps 6 and 9 and the end of epoch 1
        (pause / "go-4").touch()
        at_step(proc, pause, 10)
        outbox = Path(params_dict["paths"]["checkpoints"]) / train.OUTBOX
        assert [f.relative_to(outbox).parts[1:] for f in outbox.rglob("*.png")] == [("samples", "epoch_001.png")]
        server.start()
        (pause / "go-10").touch()
        assert proc.wait(600) == 0, (tmp_path / "train.log").read_text()[-4000:]
        said = (tmp_path / "train.log").read_text()
        assert "does not answer: the training goes on" in said and "answers again" in said
        client = mlflow.MlflowClient(tracking_uri=server.uri)
        r = finished_run(client, checkpoint.load(params_dict["paths"]["model"])["fingerprint"])
        assert r.info.status == "FINISHED"
        assert_curve_complete(client, r.info.run_id, pd.read_csv(Path(params_dict["paths"]["train_reports"]) / "losses.csv"))
        assert TRAINING_FILES <= artifacts(client, r.info.run_id)
        assert not outbox.exists()  # delivered, then removed


@pytest.mark.long
def test_a_server_still_down_at_the_end_fails_after_its_wait_and_a_rerun_sends_the_rest(params_dict, tmp_path,
                                                                                         monkeypatch):
    d = copy.deepcopy(params_dict)
    d["mlflow"]["server_wait_minutes"] = 0
    run_stages(parse_params(d), "download", "prepare")
    with mlflow_server(tmp_path / "server") as server:
        proc, pause = start_paused_training(d, tmp_path, server.uri, "10")
        at_step(proc, pause, 10)
        server.stop()
        (pause / "go-10").touch()
        assert proc.wait(600) != 0
        said = (tmp_path / "train.log").read_text()
        assert f"error: MLflow server {server.uri} has not answered for 0 minutes (mlflow.server_wait_minutes)" in said
        assert "The model and the final checkpoint are saved: rerun the train stage" in said
        assert checkpoint.load(d["paths"]["model"])["steps"] == 12

        server.start()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        result = train.train(parse_params(d), progress=False)  # resumes at its last step: nothing to train
        client = mlflow.MlflowClient(tracking_uri=server.uri)
        r = client.get_run(result["mlflow_run_id"])
        assert r.info.status == "FINISHED" and len(client.search_runs([r.info.experiment_id])) == 1
        assert_curve_complete(client, r.info.run_id, pd.read_csv(Path(d["paths"]["train_reports"]) / "losses.csv"))
        assert TRAINING_FILES <= artifacts(client, r.info.run_id)


# --- 3. experiments shared between clones through a git remote and a DVC remote -------------------------

def shared_remotes(tmp_path: Path) -> tuple[Path, Path]:
    """A bare git repository (the team's git remote), and a clone of the project that pushed to it, whose
    committed DVC config names a local-directory DVC remote (the team's S3 bucket, SSH host, ...)."""
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    first = make_repo(tmp_path / "clone1")
    run(["dvc", "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote")], first)
    run(["git", "commit", "-qam", "the team's DVC remote"], first)
    run(["git", "remote", "add", "origin", str(origin)], first)
    run(["git", "push", "-q", "origin", "main"], first)
    return origin, first


@pytest.mark.long
def test_an_experiment_pushed_by_one_clone_is_pulled_applied_and_used_by_another(tmp_path):
    origin, first = shared_remotes(tmp_path)
    run(["dvc", "exp", "run", "-S", "lambda_cycle=5", "-n", "lc5"], first)
    run(["dvc", "exp", "push", "origin", "lc5"], first)
    trained = (first / "data" / "model.pt").read_bytes()

    second = tmp_path / "clone2"
    run(["git", "clone", "-q", str(origin), str(second)], tmp_path)
    run(["dvc", "exp", "pull", "origin", "lc5"], second)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], second).stdout)
    (exp,) = [e for rev in shown for e in rev.get("experiments") or [] if e.get("name") == "lc5"]
    data = exp["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["lambda_cycle"] == 5
    assert "fcn_AtoB_class_iou" in json.dumps(data["metrics"]["reports/metrics.json"])
    run(["dvc", "exp", "apply", "lc5"], second)
    pulled = run(["dvc", "pull"], second)
    assert (second / "data" / "model.pt").read_bytes() == trained
    assert any((second / "data" / "translated").rglob("*.png"))
    # nothing to recompute: the results came from the remote (the record stage always runs: it writes nothing DVC tracks)
    status = run(["dvc", "status"], second).stdout.replace("record:\n\talways changed", "")
    assert "changed" not in status, status + pulled.stdout
    # a repro computes nothing, and this clone's store, which never saw the training, gets a run for its results
    repro = run(["dvc", "repro"], second).stdout
    assert [line for line in repro.splitlines() if line.startswith("Running stage")] == ["Running stage 'record':"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{second / 'mlflow.db'}")
    (pulled_run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    evaluated = json.loads((second / "reports" / "eval" / "metrics.json").read_text())
    assert {k: v for k, v in pulled_run.data.metrics.items() if k.startswith("eval/")} == \
        {f"eval/{k}": v for k, v in evaluated.items()}
    assert pulled_run.data.params["lambda_cycle"] == "5.0" and "pipeline.source" in pulled_run.data.tags
    image = tmp_path / "new.png"
    image.write_bytes(png_bytes(3, (32, 32)))
    run([sys.executable, "-m", "pipeline.tools.translate", str(image), "--out", str(tmp_path / "out"), "--no-progress"],
        second)
    assert (tmp_path / "out" / "new.png").is_file()


# --- 4. training across nodes ---------------------------------------------------------------------------

@pytest.mark.long
def test_two_nodes_on_loopback_train_one_model_with_identical_weights_and_one_run(params_dict, tmp_path):
    d = copy.deepcopy(params_dict)
    d["train"]["nnodes"] = 2
    d["train"]["rdzv_endpoint"] = f"127.0.0.1:{free_port()}"
    run_stages(parse_params(d), "download", "prepare")
    file = tmp_path / "nodes.yaml"
    file.write_text(yaml.safe_dump(d))
    cmd = [sys.executable, "-m", "pipeline.stages.train", "--params", str(file)]
    logs = [(tmp_path / f"node{i}.log").open("w") for i in range(2)]
    nodes = [subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=log, stderr=subprocess.STDOUT) for log in logs]
    codes = [n.wait(600) for n in nodes]
    said = [(tmp_path / f"node{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(s[-3000:] for s in said)
    assert all("--nnodes=2 --rdzv-backend=c10d" in s for s in said)
    model = checkpoint.load(d["paths"]["model"])
    sync = model["distributed"]
    assert sync["world_size"] == 2 and sync["backend"] == "gloo" and len(set(sync["weights_sha256"])) == 1
    assert model["steps"] == 6  # 6 items, 3 per node per epoch, 2 epochs
    assert sum("trained cyclegan for 6 steps" in s for s in said) == 1  # the node of rank 0 reports
    client = mlflow.MlflowClient(tracking_uri=d["mlflow"]["tracking_uri"])
    assert finished_run(client, model["fingerprint"]).info.status == "FINISHED"

    # the second node reads a resume state of its own (none there): both refuse, rather than train apart
    d["train"]["rdzv_endpoint"] = f"127.0.0.1:{free_port()}"
    own = copy.deepcopy(d)
    own["paths"]["checkpoints"] = str(tmp_path / "node1-checkpoints")
    files = [tmp_path / "node0.yaml", tmp_path / "node1.yaml"]
    for f, params in zip(files, (d, own), strict=True):
        f.write_text(yaml.safe_dump(params))
    procs = [subprocess.Popen(cmd[:-1] + [str(f)], cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for f in files]
    said = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode != 0 for p in procs)
    # (which node gets rank 0 is the rendezvous's choice)
    assert all(re.search(r"would start from different steps \(\[(6, 0|0, 6)\], by rank\)", s) for s in said), said[0][-3000:]


# --- 5. a study sharded over machines -------------------------------------------------------------------

def test_a_shard_is_every_nth_experiment_and_the_shards_cover_the_study():
    from pipeline.studies import ablations

    cmds = ablations.exp_commands(["full", "no_pool", "gan_alone"], [0, 1], [])
    shares = [ablations.share(cmds, (i, 3)) for i in (1, 2, 3)]
    names = [[ablations.exp_name(c) for c in s] for s in shares]
    assert names == [["full-s0", "full-s1"], ["no_pool-s0", "no_pool-s1"], ["gan_alone-s0", "gan_alone-s1"]]
    assert ablations.share(cmds, (1, 1)) == cmds
    for bad in ("0/2", "3/2", "1", "a/b"):
        with pytest.raises(SystemExit):
            ablations.parse_shard(bad)


@pytest.mark.slow  # two clones, each running two experiments at -j 2 against one server (about 5 min on 2 cores)
def test_a_study_sharded_over_two_clones_meets_in_one_server_and_one_exp_show(tmp_path):
    origin, first = shared_remotes(tmp_path)
    second = tmp_path / "clone2"
    run(["git", "clone", "-q", str(origin), str(second)], tmp_path)
    with mlflow_server(tmp_path / "server") as server:
        study = [sys.executable, "-m", "pipeline.studies.ablations", "--only", "full", "no_pool", "--seeds", "0", "1",
                 "--jobs", "2", "--push", "origin"]
        logs = [(tmp_path / f"shard{i}.log").open("w") for i in (1, 2)]
        shards = [subprocess.Popen(study + ["--shard", f"{i}/2"], cwd=clone, stdout=log, stderr=subprocess.STDOUT,
                                   env={**env(), "MLFLOW_TRACKING_URI": server.uri})
                  for i, clone, log in zip((1, 2), (first, second), logs, strict=True)]
        codes = [s.wait(1800) for s in shards]
        assert codes == [0, 0], "\n".join((tmp_path / f"shard{i}.log").read_text()[-3000:] for i in (1, 2))

        client = mlflow.MlflowClient(tracking_uri=server.uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([exp.experiment_id], "tags.study = 'ablation'")
        assert sorted(r.data.tags["dvc.exp_name"] for r in runs) == ["full-s0", "full-s1", "no_pool-s0", "no_pool-s1"]
        for r in runs:  # every run complete, though four trainings logged to the server at once
            assert r.info.status == "FINISHED" and any(k.startswith("eval/") for k in r.data.metrics)
            local = Path(client.download_artifacts(r.info.run_id, "losses.csv", str(tmp_path / r.info.run_id)))
            assert_curve_complete(client, r.info.run_id, pd.read_csv(local))
            assert TRAINING_FILES <= artifacts(client, r.info.run_id)

        run([sys.executable, "-m", "pipeline.studies.report", "--study", "ablation"], first,
            {"MLFLOW_TRACKING_URI": server.uri})
        gathered = pd.read_csv(first / "reports" / "ablation_runs.csv")  # both shards' runs, from the server
        assert sorted(gathered["run"]) == ["full-s0", "full-s1", "no_pool-s0", "no_pool-s1"]

    run(["dvc", "exp", "pull", "origin", "full-s1", "no_pool-s1"], first)  # the second shard's experiments
    shown = json.loads(run(["dvc", "exp", "show", "--json"], first).stdout)
    names = {e["name"]: e for rev in shown for e in rev.get("experiments") or [] if e.get("name")}
    assert set(names) >= {"full-s0", "full-s1", "no_pool-s0", "no_pool-s1"}
    for name in ("full-s1", "no_pool-s1"):
        assert names[name]["revs"][0]["data"]["metrics"]["reports/metrics.json"]["data"]


# --- 6. the health probe: one question per burst of deliveries, not one per file ------------------------------

class SlowHealth(BaseHTTPRequestHandler):
    """A /health that answers after DELAY seconds and counts the questions: a remote server's round trip."""
    DELAY, asked = 0.2, []

    def do_GET(self):
        SlowHealth.asked.append(self.path)
        time.sleep(SlowHealth.DELAY)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


class Delivered:
    """An MlflowClient stand-in that takes every call and fails the ones it is told to."""
    def __init__(self):
        self.files, self.fail = [], False

    def log_artifact(self, run_id, path, artifact_path=None):
        if self.fail:
            raise ConnectionError("the server went away")
        self.files.append(Path(path).name)


def test_a_burst_of_deliveries_asks_the_servers_health_once(tmp_path):
    SlowHealth.asked = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SlowHealth)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        client = Delivered()
        t = Tracker(client, f"http://127.0.0.1:{httpd.server_port}", "1", "run", outbox=tmp_path / "outbox")
        files = [tmp_path / f"f{i}.txt" for i in range(10)]
        for f in files:
            f.write_text("x")
        tick = time.monotonic()
        for f in files:
            t.log_artifact(f)
        took = time.monotonic() - tick
        assert client.files == [f.name for f in files] and SlowHealth.asked == ["/health"]
        assert took < 5 * SlowHealth.DELAY  # one round trip, not ten
        time.sleep(HEALTH_TTL_S)
        t.log_artifact(files[0])  # the answer has aged: asked again
        assert len(SlowHealth.asked) == 2
        client.fail = True  # a delivery that fails asks at once; the server answers, so the error is real
        with pytest.raises(ConnectionError):
            t.log_artifact(files[1])
        assert len(SlowHealth.asked) == 3
    finally:
        httpd.shutdown()
