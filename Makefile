# Convenience targets; the README's two commands are scripts/up.sh and scripts/test.sh.
PY ?= .venv/bin/python

.PHONY: up test bench bench-agent bench-ingest bench-store bench-system bench-ping bench-http bench-influx bench-zabbix bench-alerting bench-apps bench-sdk

up:
	./scripts/up.sh

test:
	./scripts/test.sh

# Every benchmark prints its figures; none is a test. Some need the servers the tests use
# (node_exporter, VictoriaMetrics, Zabbix, PostgreSQL): run `make test` once to install them.
bench: bench-agent bench-ingest bench-store bench-system bench-ping bench-http bench-influx bench-zabbix bench-alerting bench-apps bench-sdk

bench-agent:    ; $(PY) bench/agent_overhead.py
bench-ingest:   ; $(PY) bench/collector_ingest.py
bench-store:    ; $(PY) bench/store_query.py
bench-system:   ; $(PY) bench/system_checks.py
bench-ping:     ; $(PY) bench/ping_sweep.py
bench-http:     ; $(PY) bench/http_probe.py
bench-influx:   ; $(PY) bench/influx_sink.py
bench-zabbix:   ; $(PY) bench/zabbix_sink.py
bench-alerting: ; $(PY) bench/alerting_eval.py && $(PY) bench/alerting_latency.py
bench-apps:     ; $(PY) bench/app_ingest.py
bench-sdk:      ; $(PY) bench/sdk_overhead.py
