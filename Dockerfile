# `orcahello live` on CPU: follows the hydrophone nodes named in ORCAHELLO_NODES, results in the /data volume.
#
#   docker build -t orcahello-live .
#   docker run -d --name orcahello-live \
#     -e ORCAHELLO_NODES="https://<bucket>/rpi_orcasound_lab https://<bucket>/rpi_bush_point" \
#     -v "$PWD/models/orcahello-srkw-detector-v1:/model:ro" -v "$PWD/live_results:/data" orcahello-live
#
# See the README's "Live" section. The install and start steps are scripts (scripts/container_install.sh,
# scripts/container_start.sh) that the tests run outside a container too.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# PyTorch's CPU wheels (no CUDA libraries); https://pypi.org/simple where only PyPI is reachable.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Behind a TLS-intercepting proxy: its CA bundle as seen by the build, for pip and uv (build time only).
ARG PIP_CERT
ARG SSL_CERT_FILE
COPY . /opt/orcahello/src
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" /opt/orcahello/src/scripts/container_install.sh /opt/orcahello/venv \
    && rm -rf /root/.cache
ENV ORCAHELLO_MODEL=/model \
    ORCAHELLO_OUTPUT_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
STOPSIGNAL SIGTERM
CMD ["/opt/orcahello/src/scripts/container_start.sh"]
