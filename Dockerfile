# The axiom-ray image: rayproject/ray 2.60 (Python 3.11) with the locked stack, axiom-ray and
# the embedded default model (converted), so the RayJob, the RayCluster and the launcher's nodes
# all run the same bits. Two variants from this one file:
#
#   docker build -t REGISTRY/axiom-ray:0.1.0-cpu .                          # CPU stack
#   docker build -t REGISTRY/axiom-ray:0.1.0-gpu \
#       --build-arg BASE=rayproject/ray:2.60.0-py311-gpu --build-arg STACK=gpu .
#
# (Not built here: this machine has no Docker engine. Its install step, scripts/install_stack.sh,
# is what tests/test_lock.py runs in a fresh venv.) The GPU stack's torch brings its own CUDA 13
# libraries (requirements/gpu.txt), so the node's NVIDIA driver must support CUDA 13 (>= 580);
# the base image's CUDA only has to not get in the way.
ARG BASE=rayproject/ray:2.60.0-py311-cpu
FROM ${BASE}
ARG STACK=cpu

# The image's user is `ray` (uid 1000, gid 100), as in the KubeRay pods' securityContext.
WORKDIR /home/ray/axiom-ray
COPY --chown=1000:100 . .
# The CPU lock's torch is the 2.13.0+cpu wheel, which PyPI does not have: pip finds it on
# PyTorch's CPU index (the lock's sha256 still decides what installs).
RUN if [ "${STACK}" = cpu ]; then export PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu; fi \
    && bash scripts/install_stack.sh "${STACK}" --python python --convert-model \
    && rm -rf /home/ray/.cache/pip
# Fail the build, not the first job, when the entry point or the model is missing.
RUN python jobs/iterate.py --help >/dev/null \
    && python -c "from axiom_ray.models import gguf_path, default_model_dir; gguf_path(); assert (default_model_dir() / 'config.json').is_file()"
ENV TOKENIZERS_PARALLELISM=false
