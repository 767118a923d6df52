# Targets a newcomer can guess. `make run` and `make test` set everything up themselves.
PY := .venv/bin/python
REGISTRY ?= ghcr.io/fashion-drift
TAG ?= $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' components/__init__.py)

.PHONY: help setup run test compile lint format bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

setup: ## create .venv with the pinned packages and install Debian's dataset-fashion-mnist
	@bash scripts/setup.sh

run: setup ## run the whole training pipeline locally (kfp.local, CPU) and print the drift report's path
	$(PY) pipeline.py run --local

test: ## run the test suite (starts and stops the storage emulators and loopback servers itself)
	@bash scripts/setup.sh --test
	$(PY) -m pytest -q

compile: setup ## compile the pipeline YAMLs into pipelines/
	$(PY) pipeline.py compile --registry $(REGISTRY) --tag $(TAG)

lint: setup ## ruff (style, docstrings), format check, import contracts, mypy, hadolint
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	.venv/bin/lint-imports --no-cache --no-logo
	$(PY) -m mypy
	.venv/bin/hadolint --failure-threshold info images/Dockerfile

format: setup ## apply ruff's formatting
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup ## run every benchmark script and print its figures (about an hour here; bench_gpu.py skips without CUDA)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# ---- kind: from a laptop with Docker to a run (needs docker, kind and kubectl; NOT run where Docker is absent)
KIND_CLUSTER ?= fashion-drift
KFP_VERSION ?= 2.17.0
KIND_TAG ?= $(TAG)
STAGES := data ingest train embed prepare arize drift evaluate
# --target kind: small CPU/memory requests, no GPU request, node selector or toleration
# (components/pipelines/settings.py, KIND_RESOURCES); the cluster defaults stay for `make compile`.
KIND_COMPILE_ARGS := --target kind --registry $(REGISTRY) --tag $(KIND_TAG)
KFP_CRDS := crd/applications.app.k8s.io crd/workflows.argoproj.io crd/scheduledworkflows.kubeflow.org

.PHONY: kind kind-up kind-kfp kind-images kind-config kind-port-forward kind-submit kind-down images

kind: kind-up kind-kfp kind-images kind-config kind-submit ## all kind steps: cluster, KFP, images, config, submit (needs Docker)

kind-up: ## create the kind cluster from manifests/kind/cluster.yaml and wait for its nodes (needs Docker)
	kind get clusters | grep -qx $(KIND_CLUSTER) || kind create cluster --name $(KIND_CLUSTER) --config manifests/kind/cluster.yaml --wait 180s
	kubectl config use-context kind-$(KIND_CLUSTER)

# The KFP 2.17 standalone install: cluster-scoped resources (namespace, Application, Argo and KFP CRDs),
# wait until the CRDs are established, then the platform-agnostic overlay (manifests/kfp; env/dev would
# pull :master images), then wait for every deployment (the upstream docs say about 3 minutes).
kind-kfp: ## install KFP standalone $(KFP_VERSION) (platform-agnostic overlay) and wait for it
	kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=$(KFP_VERSION)"
	kubectl wait --for condition=established --timeout=120s $(KFP_CRDS)
	kubectl apply -k manifests/kfp
	kubectl -n kubeflow wait --for=condition=Available --timeout=900s deployment --all

# One Dockerfile, six images: each stage's build arguments (see images/Dockerfile). GPU stages get the
# gpu base (set up for the NVIDIA runtime); APT_PACKAGES_<stage> lists extra Debian packages, pinned.
# TORCH_INDEX_URL (GPU stages only): empty = torch from PyPI, built for CUDA 13 (driver 580+); for a CUDA 12
# node pool e.g. make images TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 (see images/Dockerfile).
GPU_STAGES := train embed evaluate
TORCH_INDEX_URL ?=
APT_PACKAGES_data := dataset-fashion-mnist=0.0~git20200523.55506a9-1
image_ref = $(REGISTRY)/fashion-drift-$(1):$(KIND_TAG)
image_build_args = --build-arg STAGE=$(1) --build-arg BASE=$(if $(filter $(1),$(GPU_STAGES)),gpu,cpu) \
	--build-arg APT_PACKAGES="$(APT_PACKAGES_$(1))" \
	$(if $(filter $(1),$(GPU_STAGES)),--build-arg TORCH_INDEX_URL="$(TORCH_INDEX_URL)")

IMAGE_TARGETS := $(addprefix image-,$(STAGES))
.PHONY: $(IMAGE_TARGETS)

images: $(IMAGE_TARGETS) ## build every stage image from images/Dockerfile (one: make image-<stage>)

$(IMAGE_TARGETS): image-%:
	docker build -f images/Dockerfile $(call image_build_args,$*) -t $(call image_ref,$*) .

kind-images: images ## build the images and load them into the kind nodes
	@$(foreach s,$(STAGES),kind load docker-image --name $(KIND_CLUSTER) $(call image_ref,$(s)) || exit 1;)

# After kind-kfp: the KFP install creates its own kfp-launcher ConfigMap (defaultPipelineRoot empty, no
# providers); this replaces it with manifests/project's (minio://mlpipeline/v2/artifacts, SeaweedFS).
kind-config: ## the namespace's Arize secret and launcher config (from manifests/project/*.example)
	@test -f manifests/project/arize.env || cp manifests/project/arize.env.example manifests/project/arize.env
	kubectl apply -k manifests/project

kind-port-forward: ## forward the KFP UI and API to http://localhost:8080 (runs in the foreground)
	kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80

# The port-forward starts in the background; the submit waits (up to 30 s) until the API answers through it.
kind-submit: setup ## submit the training pipeline to the kind cluster (port-forwards in the background) and wait
	@kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80 >/dev/null 2>&1 & pf=$$!; \
	for i in $$(seq 30); do $(PY) -c "import urllib.request as u; u.urlopen('http://localhost:8080/apis/v2beta1/healthz', timeout=2)" 2>/dev/null && break; sleep 1; done; \
	$(PY) pipeline.py submit --host http://localhost:8080 $(KIND_COMPILE_ARGS) --wait; rc=$$?; kill $$pf; exit $$rc

kind-down: ## delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)
