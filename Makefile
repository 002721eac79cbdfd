# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench-masks clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

DEMO_DIR := out/demo

demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/python -m mim_jax.train --config configs/demo.py --workdir $(DEMO_DIR)
	$(BIN)/python -m mim_jax.evaluate knn --checkpoint $(DEMO_DIR)
	$(BIN)/python -m mim_jax.evaluate linear --checkpoint $(DEMO_DIR)
	$(BIN)/python -m mim_jax.evaluate reconstruct --checkpoint $(DEMO_DIR) \
		--mask random,block,red,blue,green,purple
	$(BIN)/python -m mim_jax.masking.viz --out $(DEMO_DIR)/masks.png
	@echo
	@echo "Demo outputs in $(DEMO_DIR)/:"
	@echo "  checkpoints/       Orbax checkpoints (rerun the train command to resume)"
	@echo "  metrics.jsonl      loss, lr, grad norm and img/s per logged step; tensorboard/ likewise"
	@echo "  reconstructions/   original | masked | reconstruction of digits, per checkpoint"
	@echo "  eval/              knn.json, linear.json, reconstruct.json, recon_<mask>_r0.75.png per strategy"
	@echo "  masks.png          every masking strategy, six samples each"

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-masks: $(STAMP)
	for m in random red blue green purple; do \
		$(BIN)/python -m mim_jax.bench masks --mask $$m --grid 14,14 --batch-size 4096; done

clean:
	rm -rf $(VENV) out
