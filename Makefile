# Thin wrappers around ./quickstart (which needs root).
.PHONY: demo run test bench lint clean

demo:
	./quickstart demo
run:
	./quickstart run
test:
	./quickstart test
bench:
	./quickstart bench
lint:
	./quickstart lint
clean:
	rm -rf .venv .run .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
