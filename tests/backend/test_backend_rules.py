"""Rules of the KFP 2.17.0 backend that kfp.local does not enforce, checked on what we ship.

kfp.local runs every task in this process: it resolves producers by task key, never reads the
launcher config, ignores GPU settings, retries and cron, and has no MLMD to reuse an imported
artifact from. A real cluster does all of that, so each rule below is read from the backend's source
(kubeflow/pipelines at tag 2.17.0; the file is cited at each test) and checked on:

- the committed golden YAMLs (``pipelines/*.yaml``, what users submit),
- a fresh compile for the cluster target (what ``submit`` and ``schedule`` send),
- a fresh compile for the kind target (``--target kind``, what the ``make kind-*`` targets send),

plus the launcher config (``manifests/project/kfp-launcher.yaml``), the stages' default endpoint
(``components/common/storage.py``) and the documented pipeline roots. Facts taken from the pinned
install (its Services and ports, the launcher's schemes) are in ``kfp_2_17_0.json`` next to this file.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from components.common import storage
from components.common.images import STAGES
from components.pipelines import cli, client
from components.pipelines.definitions import compile_pipelines
from components.pipelines.settings import (
    CACHED_STAGES,
    HELPER,
    KIND_TARGET,
    NOTIFY,
    ClusterSettings,
    settings_for,
)

ROOT = Path(__file__).resolve().parents[2]
FACTS = json.loads((Path(__file__).with_name("kfp_2_17_0.json")).read_text())
LAUNCHER_CONFIG = ROOT / "manifests" / "project" / "kfp-launcher.yaml"
DOCS = (ROOT / "README.md", ROOT / "pipelines" / "README.md", ROOT / "manifests" / "README.md")
PIPELINES = ("training", "monitoring")
SOURCES = ("golden", "cluster", KIND_TARGET)
GPU_STAGES = ("train", "embed", "evaluate")  # evaluate runs two models, as embed runs one
# The tasks of the monitoring pipeline that bring the run's production batch in: which batch (the
# date from the schedule time or batch_date), and reading it in whatever form it comes.
RESOLVE_COMPONENT = "comp-resolve-batch"
INGEST_COMPONENT = "comp-ingest"
SCHEDULE_TIME_PLACEHOLDER = "{{$.pipeline_job_schedule_time_utc}}"


# ---- what is checked -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[tuple[str, str], tuple[dict, dict]]:
    """{(source, pipeline): (pipeline_spec, platform_spec)} for the golden files and both targets."""
    out: dict[tuple[str, str], tuple[dict, dict]] = {}
    for name in PIPELINES:
        out[("golden", name)] = _load(ROOT / "pipelines" / f"{name}.yaml")
    for target in ("cluster", KIND_TARGET):
        folder = tmp_path_factory.mktemp(target)
        for name, path in compile_pipelines(folder, settings=settings_for(target)).items():
            out[(target, name)] = _load(path)
    return out


def _load(path: Path) -> tuple[dict, dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _tasks(spec: dict):
    """Every task, inside loops and conditions too: (task key, task)."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        yield from dag["tasks"].items()


def _executor(spec: dict, task: dict) -> tuple[str, dict]:
    component = spec["components"][task["componentRef"]["name"]]
    label = component.get("executorLabel")
    return (label, spec["deploymentSpec"]["executors"][label]) if label else ("", {})


def _k8s(platform: dict) -> dict:
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


def _stage_of(component_ref: str) -> str:
    name = re.sub(r"-\d+$", "", component_ref.removeprefix("comp-"))
    if name in STAGES:
        return name
    return {"notify-drift": NOTIFY}.get(name, HELPER)


def _settings(source: str) -> ClusterSettings:
    return settings_for(KIND_TARGET if source == KIND_TARGET else "cluster")


every_compile = pytest.mark.parametrize(("source", "name"), [(s, n) for s in SOURCES for n in PIPELINES])


# ---- importers -----------------------------------------------------------------------------------
@every_compile
def test_importers_carry_no_display_name(compiled, source, name):
    # backend/src/v2/component/importer_launcher.go records the importer's task under
    # TaskInfo.Name (the display name when one is set); backend/src/v2/compiler/argocompiler/importer.go
    # passes the importer template no task-name argument; backend/src/v2/driver/resolve.go looks
    # producers up by task key ("cannot find producer task"). So an importer whose taskInfo.name is not
    # its key breaks every task that reads its output. kfp.local resolves by key and never notices.
    spec, _ = compiled[(source, name)]
    for key, task in _tasks(spec):
        _, executor = _executor(spec, task)
        if "importer" in executor:
            assert task["taskInfo"]["name"] == key, f"{source} {name}: importer {key!r} has a display name"


@every_compile
def test_importer_uris_are_constants_or_pipeline_inputs(compiled, source, name):
    # backend/src/v2/component/importer_launcher.go: an importer's artifact_uri is a constant or a
    # pipeline input parameter (componentInputParameter), never another task's output.
    spec, _ = compiled[(source, name)]
    for key, task in _tasks(spec):
        _, executor = _executor(spec, task)
        if "importer" not in executor:
            continue
        uri = task["inputs"]["parameters"]["uri"]
        assert "taskOutputParameter" not in uri, f"{source} {name}: importer {key!r} reads a task output"


def test_the_monitoring_batch_cannot_be_served_from_cache(compiled):
    # backend/src/v2/component/importer_launcher.go: an importer with reimport=False reuses the MLMD
    # artifact already recorded for the same URI, and backend/src/v2/cacheutils/cache.go builds a
    # task's cache key from its input artifacts' names and its parameter values: a daily batch
    # written again at the same URI would be embedded once and then served from cache forever. So the
    # batch must not come from an importer of production_uri, and neither the task that names it
    # (resolve-batch) nor the one that reads it (ingest) may be cached: every task downstream gets a
    # new batch artifact, so their cache keys change with it.
    assert "ingest" not in CACHED_STAGES
    for source in SOURCES:
        spec, _ = compiled[(source, "monitoring")]
        tasks = dict(_tasks(spec))
        for key, task in tasks.items():
            _, executor = _executor(spec, task)
            if "importer" in executor:
                uri = task["inputs"]["parameters"]["uri"]
                assert uri.get("componentInputParameter") != "production_uri", (
                    f"{source}: importer {key!r} imports production_uri (reused from MLMD, cached)"
                )
        for component in (RESOLVE_COMPONENT, INGEST_COMPONENT):
            found = [t for t in tasks.values() if t["componentRef"]["name"] == component]
            assert len(found) == 1, f"{source}: expected one {component} task"
            assert not found[0].get("cachingOptions", {}).get("enableCache", False), (
                f"{source}: {component} is cached"
            )
        (ingest,) = [t for t in tasks.values() if t["componentRef"]["name"] == INGEST_COMPONENT]
        # ingest reads the URI resolve-batch names, never production_uri with {date} unfilled.
        assert ingest["inputs"]["parameters"]["source_uri"]["taskOutputParameter"]["producerTask"] == (
            "resolve-batch"
        )
        # What embed reads is ingest's output, not an artifact that could be an older run's.
        loop = next(c for n, c in spec["components"].items() if n.startswith("comp-for-loop"))
        embed = loop["dag"]["tasks"]["embed"]["inputs"]["artifacts"]["dataset"]
        assert embed == {"componentInputArtifact": "pipelinechannel--ingest-batch"}, source


def test_the_batch_date_comes_from_the_schedule_time_placeholder_as_a_whole_value(compiled):
    # backend/src/v2/driver/resolve.go replaces {{$.pipeline_job_schedule_time_utc}} only when it is
    # the whole constant value of a task input (recurring runs: the scheduled time; runs started by
    # hand: their creation time). Inside a longer string it would stay literal.
    for source in SOURCES:
        spec, _ = compiled[(source, "monitoring")]
        (resolve,) = [t for _, t in _tasks(spec) if t["componentRef"]["name"] == RESOLVE_COMPONENT]
        values = [
            p.get("runtimeValue", {}).get("constant")
            for p in resolve["inputs"].get("parameters", {}).values()
        ]
        assert SCHEDULE_TIME_PLACEHOLDER in values, f"{source}: resolve-batch does not get the schedule time"
        # and nowhere is the placeholder part of a longer constant
        for key, task in _tasks(spec):
            for name, param in task.get("inputs", {}).get("parameters", {}).items():
                constant = param.get("runtimeValue", {}).get("constant")
                if isinstance(constant, str) and SCHEDULE_TIME_PLACEHOLDER in constant:
                    assert constant == SCHEDULE_TIME_PLACEHOLDER, f"{source}: {key}.{name} = {constant!r}"


# ---- GPU -----------------------------------------------------------------------------------------
@every_compile
def test_each_gpu_task_has_the_accelerator_node_selector_and_toleration(compiled, source, name):
    # backend/src/v2/driver/driver.go turns the container's accelerator (resourceType, resourceCount)
    # into a resource limit named after the type (nvidia.com/gpu on KFP OSS); backend/src/v2/driver/
    # k8s.go applies the kubernetes executor config's nodeSelector and tolerations to the pod. Without
    # the toleration a GPU node pool's NoSchedule taint keeps the pod Pending; without the selector it
    # may land on a CPU node. On kind (no GPU) none of them may be set, or the pods stay Pending.
    spec, platform = compiled[(source, name)]
    settings = _settings(source)
    k8s = _k8s(platform)
    seen = set()
    for _, task in _tasks(spec):
        label, executor = _executor(spec, task)
        if "container" not in executor:
            continue
        resources = executor["container"].get("resources", {})
        conf = k8s.get(label, {})
        stage = _stage_of(task["componentRef"]["name"])
        if stage in GPU_STAGES and settings.gpu_limit > 0:
            seen.add(stage)
            assert resources["accelerator"]["resourceType"] == settings.gpu_resource, label
            assert int(resources["accelerator"]["resourceCount"]) >= 1, label
            assert conf["nodeSelector"]["labels"] == {settings.gpu_node_key: settings.gpu_node_value}, label
            assert {"key": settings.gpu_resource, "operator": "Exists", "effect": "NoSchedule"} in conf[
                "tolerations"
            ], label
        else:
            assert "accelerator" not in resources, f"{source} {name}: {label} asks for a GPU"
            assert "nodeSelector" not in conf and "tolerations" not in conf, f"{source} {name}: {label}"
    if settings.gpu_limit > 0:
        expected = {"training": set(GPU_STAGES), "monitoring": {"embed"}}[name]
        assert seen == expected, f"{source} {name}: GPU stages found: {sorted(seen)}"


# ---- retries -------------------------------------------------------------------------------------
@every_compile
def test_retry_max_duration_covers_each_stage(compiled, source, name):
    # backend/src/v2/compiler/argocompiler/container.go maps the task's retryPolicy to Argo's
    # retryStrategy (limit, backoff duration, factor, maxDuration). Argo counts maxDuration from the
    # first attempt's start and it is also the retry pods' deadline, so it must cover every attempt:
    # train gets a whole training twice (settings.DEFAULT_RETRIES), the short stages an hour.
    spec, _ = compiled[(source, name)]
    settings = _settings(source)
    for key, task in _tasks(spec):
        ref = task["componentRef"]["name"]
        if ref.startswith(("comp-for-loop", "comp-condition")) or "importer" in _executor(spec, task)[1]:
            continue
        policy = settings.retry_of(_stage_of(ref))
        got = task["retryPolicy"]
        assert got["maxRetryCount"] == policy.retries, f"{source} {name}: {key}"
        assert got["backoffMaxDuration"] == f"{client_seconds(policy.max_duration)}s", (
            f"{source} {name}: {key}"
        )
        if _stage_of(ref) == "train":
            assert got["maxRetryCount"] >= 1 and client_seconds(got["backoffMaxDuration"]) >= 4 * 3600


def client_seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


# ---- endpoints -----------------------------------------------------------------------------------
SERVICE_REF = re.compile(r"\b([a-z0-9][a-z0-9-]*)\.(kubeflow)(?:\.svc(?:\.cluster\.local)?)?:(\d+)\b")


def _check_service(endpoint: str, where: str) -> None:
    host_port = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}").netloc
    match = SERVICE_REF.fullmatch(host_port)
    assert match, f"{where}: {endpoint!r} is not <service>.kubeflow:<port>"
    service, namespace, port = match.group(1), match.group(2), int(match.group(3))
    assert namespace == FACTS["namespace"], where
    assert service in FACTS["services"], (
        f"{where}: Service {service!r} does not exist in KFP 2.17.0's platform-agnostic install "
        f"(it has {', '.join(sorted(FACTS['services']))})"
    )
    assert port in FACTS["services"][service], f"{where}: {service} has no port {port}"


def _launcher_providers() -> dict:
    config = yaml.safe_load(LAUNCHER_CONFIG.read_text())
    return yaml.safe_load(config["data"].get("providers") or "{}") or {}


def test_every_launcher_endpoint_is_a_service_of_the_pinned_install():
    # backend/src/v2/config/s3.go (and minio.go): with a `providers` block the launcher uses each
    # endpoint exactly as written; backend/src/v2/objectstore/config.go: without one, minio:// goes to
    # seaweedfs.kubeflow:9000. The minio-service Service of older releases is gone since 2.16.
    endpoints = []
    for provider, conf in _launcher_providers().items():
        for entry in [conf.get("default") or {}, *(conf.get("Overrides") or [])]:
            if entry.get("endpoint"):
                endpoints.append((provider, entry["endpoint"]))
    assert endpoints, "the launcher config names no endpoint"
    for provider, endpoint in endpoints:
        _check_service(endpoint, f"kfp-launcher providers.{provider}")
    _check_service(FACTS["launcher_default_endpoint"]["value"], "the launcher's built-in default")


def test_the_stages_default_endpoints_are_services_of_the_pinned_install():
    # The stages reach minio:// through components/common/storage.py; its default must be the same
    # Service the launcher uses (backend/src/v2/objectstore/config.go, DefaultEndpointInMultiUserMode).
    _check_service(storage.DEFAULT_MINIO_ENDPOINT, "components/common/storage.py")
    assert storage.StorageConfig().endpoint_for("minio") == storage.DEFAULT_MINIO_ENDPOINT.rstrip("/")
    if ClusterSettings().storage_endpoint:
        _check_service(ClusterSettings().storage_endpoint, "ClusterSettings.storage_endpoint")


def test_every_service_the_docs_and_code_name_exists():
    # The same Services (backend/src/v2/objectstore/config.go and the pinned install), wherever the
    # project names one as <service>.kubeflow:<port>: docs, manifests, the components.
    files = [*DOCS, *ROOT.joinpath("manifests").rglob("*.yaml"), *ROOT.joinpath("components").rglob("*.py")]
    files += list(ROOT.joinpath("components").rglob("*.md"))
    found = 0
    for path in files:
        for match in SERVICE_REF.finditer(path.read_text()):
            _check_service(match.group(0), str(path.relative_to(ROOT)))
            found += 1
    assert found >= 3


# ---- pipeline roots ------------------------------------------------------------------------------
ROOT_ARGUMENT = re.compile(
    r"(?:--pipeline-root[ =]|defaultPipelineRoot:\s*|--param \w+_uri=)([a-z0-9]+://[^\s`'\"|\])]+)"
)


def _cli_text() -> str:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    return "\n".join([cli.__doc__ or "", *(subparsers[c].format_help() for c in ("submit", "schedule"))])


@cache
def _schemes_provided() -> set[str]:
    """minio (the project's provider), gs (GKE: the launcher's default credentials), s3 only with an endpoint."""
    providers = _launcher_providers()
    provided = {"minio", "gs"}
    if (providers.get("s3") or {}).get("default", {}).get("endpoint"):
        provided.add("s3")
    return provided


@pytest.mark.parametrize("where", ["README.md", "pipelines/README.md", "manifests/README.md", "CLI help"])
def test_documented_pipeline_roots_use_a_scheme_the_launcher_config_provides(where):
    # backend/src/v2/objectstore/config.go: the launcher knows gs://, s3://, minio://, mem://;
    # backend/src/v2/config/env.go + s3.go: minio:// takes the `minio` provider (ours: SeaweedFS);
    # s3:// without an `s3` provider opens the bucket "fromEnv": the default AWS chain, no endpoint,
    # no credentials in the pods, i.e. real AWS. So a root or importer URI a user copies from the docs
    # must be minio:// (standalone, kind) or gs:// (GKE), or s3:// where an s3 provider is configured.
    text = _cli_text() if where == "CLI help" else (ROOT / where).read_text()
    uris = ROOT_ARGUMENT.findall(text)
    if where != "manifests/README.md":
        assert uris, f"{where} documents no pipeline root"
    for uri in uris:
        scheme = uri.split("://", 1)[0]
        assert f"{scheme}://" in FACTS["launcher_schemes"]["value"], f"{where}: {uri}"
        assert scheme in _schemes_provided(), (
            f"{where}: {uri!r}: the launcher config (manifests/project/kfp-launcher.yaml) provides "
            f"{', '.join(sorted(_schemes_provided()))}://; use minio://mlpipeline/... on KFP standalone"
        )
        if scheme == "minio":
            bucket = uri.split("://", 1)[1].split("/", 1)[0]
            # manifests/kustomize/base/installs/generic/pipeline-install-config.yaml: bucketName mlpipeline
            assert bucket == "mlpipeline", f"{where}: {uri}: KFP standalone's bucket is mlpipeline"


def test_the_cli_help_names_s3_only_with_its_provider():
    # As above (backend/src/v2/config/s3.go): s3:// without a provider is AWS itself.
    for sentence in re.split(r"[;.]\s", cli.PIPELINE_ROOT_HELP):
        if "s3://" in sentence:
            assert "provider" in sentence and "endpoint" in sentence, sentence


def test_the_launcher_config_root_is_a_provided_scheme():
    # backend/src/v2/config/env.go: defaultPipelineRoot of kfp-launcher is the root of runs that name none.
    root = yaml.safe_load(LAUNCHER_CONFIG.read_text())["data"]["defaultPipelineRoot"]
    assert root.split("://", 1)[0] in _schemes_provided() and root.startswith("minio://mlpipeline/")


# ---- cron ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "sent"),
    [("0 6 * * *", "0 0 6 * * *"), ("0 0 6 * * *", "0 0 6 * * *"), ("*/15 * * * *", "0 */15 * * * *")],
)
def test_schedules_sent_by_schedule_have_six_cron_fields(fake_kfp, given, sent, capsys):
    # backend/src/crd/controller/scheduledworkflow/util/cron_schedule.go and
    # backend/src/apiserver/server/api_converter.go use cron.Parse of robfig/cron v1.2.0 (go.mod):
    # Second | Minute | Hour | Dom | Month | DowOptional. A 5-field cron is read seconds first, so
    # `0 6 * * *` would fire at minute 6 of every hour.
    assert FACTS["cron"]["fields"] == 6 and FACTS["cron"]["first"] == "seconds"
    uris = {"production_uri": "minio://mlpipeline/b", "model_uri": "minio://mlpipeline/m"}
    client.schedule(fake_kfp.url, given, {**uris, "baseline_uri": "minio://mlpipeline/p"})
    (call,) = fake_kfp.calls("POST", "/apis/v2beta1/recurringruns")
    cron = call.body["trigger"]["cron_schedule"]["cron"]
    assert cron == sent and len(cron.split()) == 6
    if given != sent:
        assert f"scheduling {sent!r}" in capsys.readouterr().out


@pytest.fixture
def fake_kfp():
    from tests.pipeline.kfp_server import FakeKfp, serve

    fake = FakeKfp()
    server, fake.url = serve(fake)
    yield fake
    server.shutdown()
    server.server_close()


# ---- the monitoring run's model (model registry) -----------------------------------------------------
RESOLVE_MODEL_COMPONENT = "comp-resolve-model"


def test_the_monitoring_model_is_resolved_and_copied_by_an_uncached_task(compiled):
    # model_uri may name a registry version (<name>@production), which no importer can look up:
    # backend/src/v2/component/importer_launcher.go imports its artifact_uri as given (a constant or
    # a pipeline input), so the resolve-model task reads the registry at run time. It copies the
    # folder into its own output rather than pointing the output's URI at the registered folder:
    # backend/src/v2/component/launcher_v2.go uploadOutputArtifacts merges a URI the executor changed
    # (mergeRuntimeArtifacts) and then needs it under the pipeline root (bucketConfig.KeyFromURI,
    # objectstore/config.go: PrefixedBucket is scheme + bucket + the root's prefix), failing the task
    # ("failed to upload output artifact") for a model in another bucket or under another root.
    # It is never cached (backend/src/v2/cacheutils/cache.go keys on the parameters, which do not
    # change when the production pointer moves), and it reads the registry with the store's Secret.
    for source in SOURCES:
        spec, platform = compiled[(source, "monitoring")]
        tasks = dict(_tasks(spec))
        for key, task in tasks.items():
            _, executor = _executor(spec, task)
            if "importer" in executor:
                uri = task["inputs"]["parameters"]["uri"]
                assert uri.get("componentInputParameter") != "model_uri", f"{source}: {key} imports model_uri"
        (resolve,) = [t for t in tasks.values() if t["componentRef"]["name"] == RESOLVE_MODEL_COMPONENT]
        assert not resolve.get("cachingOptions", {}).get("enableCache", False), source
        assert resolve["inputs"]["parameters"]["model_uri"] == {"componentInputParameter": "model_uri"}
        label, executor = _executor(spec, resolve)
        body = "\n".join(executor["container"]["command"] + executor["container"].get("args", []))
        assert "def resolve_model(" in body and not re.search(r"\bmodel\.uri\s*=", body), source
        env = _k8s(platform).get(label, {}).get("secretAsEnv", [])
        assert any(s.get("secretName") == _settings(source).storage_secret for s in env), source
        loop = next(c for n, c in spec["components"].items() if n.startswith("comp-for-loop"))
        embed = loop["dag"]["tasks"]["embed"]["inputs"]["artifacts"]["model"]
        assert embed == {"componentInputArtifact": "pipelinechannel--resolve-model-model"}, source
