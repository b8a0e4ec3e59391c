# Prometheus from Debian's own package, so that the Compose cluster's monitoring runs on
# machines that reach Debian's mirror but no image registry. The configuration (scrape
# targets and alert rules) is mounted from deploy/prometheus at /etc/prometheus.
FROM debian:bookworm-slim
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && install -d -o prometheus -g prometheus /var/lib/prometheus/metrics2
USER prometheus
VOLUME ["/var/lib/prometheus/metrics2"]
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/var/lib/prometheus/metrics2", \
     "--storage.tsdb.retention.time=15d", \
     "--web.listen-address=:9090"]
