# AI Systems Performance Lab: the two commands a learner needs are `make lab` and `make test`.

VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU machines the kit is tested on install this PyTorch fast; on a GPU machine
# any CUDA build of torch>=2.3 works, e.g. `make lab TORCH=torch`.
TORCH  ?= torch==2.13.0
# GPU targets use the venv if there is one, else the machine's python3 (which must have CUDA torch).
PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
NBVAL  := --nbval-lax --nbval-current-env
# Notebooks that need a GPU and ship reference records measured by `make reference`.
REFERENCE_NOTEBOOKS := notebooks/ch03_os_containers/03_01_gpu_software_stack.ipynb \
                       notebooks/ch03_os_containers/03_02_numa_cpu_affinity.ipynb \
                       notebooks/ch03_os_containers/03_03_pinned_memory.ipynb \
                       notebooks/ch03_os_containers/03_05_mps_gpu_sharing.ipynb \
                       notebooks/ch05_storage_io/05_01_reads_and_page_cache.ipynb \
                       notebooks/ch05_storage_io/05_02_formats_and_compression.ipynb \
                       notebooks/ch05_storage_io/05_03_gpudirect_storage.ipynb \
                       notebooks/ch05_storage_io/05_04_dataloader_tuning.ipynb \
                       notebooks/ch05_storage_io/05_05_copy_compute_overlap.ipynb \
                       notebooks/ch05_storage_io/05_06_checkpointing.ipynb \
                       notebooks/ch05_storage_io/05_07_profiling_workflow.ipynb \
                       notebooks/ch12_orchestration/12_01_atomic_work_queues.ipynb \
                       notebooks/ch12_orchestration/12_02_cuda_graphs.ipynb \
                       notebooks/ch12_orchestration/12_03_graph_update_and_pools.ipynb \
                       notebooks/ch12_orchestration/12_04_conditional_nodes_device_launch.ipynb \
                       notebooks/ch12_orchestration/12_05_dynamic_parallelism.ipynb \
                       notebooks/ch12_orchestration/12_06_streams_and_events.ipynb \
                       notebooks/ch12_orchestration/12_07_roofline.ipynb \
                       notebooks/ch12_orchestration/12_08_p2p_and_nccl.ipynb \
                       notebooks/ch12_orchestration/12_09_nvshmem_one_sided.ipynb \
                       labs/solutions/lab_03_02_pin_input_workers__SOLUTION.ipynb \
                       labs/solutions/lab_03_03_overlap_input_copies__SOLUTION.ipynb \
                       labs/solutions/lab_03_05_share_gpu_with_mps__SOLUTION.ipynb \
                       labs/solutions/lab_05_02_choose_a_storage_format__SOLUTION.ipynb \
                       labs/solutions/lab_05_04_tune_a_dataloader__SOLUTION.ipynb \
                       labs/solutions/lab_12_01_balance_uneven_work__SOLUTION.ipynb \
                       labs/solutions/lab_12_02_capture_a_step__SOLUTION.ipynb \
                       labs/solutions/lab_12_07_place_kernel_on_roofline__SOLUTION.ipynb \
                       labs/solutions/lab_12_09_pass_a_halo__SOLUTION.ipynb
WIDGETS := "ipywidgets>=8.1,<8.2" "jupyterlab_widgets>=3.0.10,<3.1"
STORAGE := psutil zstandard lz4 safetensors
KVIKIO  := kvikio-cu13 libkvikio-cu13 rapids-logger
NVSHMEM := nvshmem4py-cu13

.PHONY: lab test gpu-test reference doctor student wheelhouse offline-install clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

## lab: set everything up and open JupyterLab at the start page
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/00_start_here.ipynb

## test: set everything up and run every test on this machine (smoke profile)
test: $(VENV)/.installed
	PERFLAB_PROFILE=smoke $(PY) -m pytest tests notebooks labs $(NBVAL) --nbval-cell-timeout=600; \
	status=$$?; [ $$status -ne 5 ] || echo "pytest collected no tests: the suite is misconfigured"; exit $$status

## gpu-test: on a GPU machine, the GPU tests and every notebook in the full profile
gpu-test:
	PERFLAB_PROFILE=full $(PYTHON) -m pytest -m gpu tests
	PERFLAB_PROFILE=full $(PYTHON) -m pytest notebooks labs/solutions $(NBVAL) --nbval-cell-timeout=1800

## reference: on the reference GPU, re-measure the shipped reference records
reference:
	$(PYTHON) -m perflab run --profile full --save-reference $(REFERENCE_NOTEBOOKS)

doctor: $(VENV)/.installed
	$(VENV)/bin/perflab doctor

## student: regenerate the labs' student copies from their solutions
student: $(VENV)/.installed
	$(VENV)/bin/perflab student

## wheelhouse: download what an offline GPU machine (Python 3.12) needs to run the notebooks
wheelhouse:
	python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d wheelhouse nbval papermill ipykernel nbformat tqdm nvidia-ml-py kubernetes-validate setuptools $(WIDGETS) $(STORAGE)
	# kvikio and nvshmem4py without their dependencies: the GPU machine's CuPy, cuda-core and CUDA
	# libraries (nvidia-nvshmem-cu13 included) serve them
	python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --no-deps -d wheelhouse $(KVIKIO) $(NVSHMEM)

## offline-install: on that machine, install from ./wheelhouse next to its own torch
offline-install:
	$(PYTHON) -m pip install --quiet --no-index --find-links wheelhouse nbval papermill ipykernel nbformat kubernetes-validate $(WIDGETS) $(STORAGE)
	$(PYTHON) -m pip install --quiet --no-index --find-links wheelhouse --no-deps $(KVIKIO) $(NVSHMEM)
	$(PYTHON) -m pip install --quiet --no-index --find-links wheelhouse --no-deps -e .

clean:
	rm -rf $(VENV) results runs .pytest_cache
