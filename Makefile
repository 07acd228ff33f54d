# ltxvfs — see README.md. `make test` works on a fresh machine: it installs what it drives.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
PYTHON ?= python3
TOOLS := .tools
# The bindings' pinned build and test dependencies.
SETUPTOOLS := setuptools==80.9.0 wheel==0.45.1
PYTEST := pytest==8.4.2 apsw==3.50.4.0
# The hosts of the plugins the wheel brings (bindings/python/tests/test_datasette.py and
# test_sqlite_utils.py): Datasette 0.65 with sqlite-utils, then Datasette 1.0 on its own.
PLUGIN_HOSTS := datasette==0.65.5 sqlite-utils==4.2.1
# ltxvfs.django is tested with Django 5.2 LTS (Django 6 needs Python 3.12).
DJANGO := django==5.2.19
DATASETTE_1 := datasette==1.0a41
WHEEL_DIR := target/wheels
# The system python: its sqlite3 module can load extensions (pyenv's cannot).
SYSTEM_PYTHON ?= /usr/bin/python3
BETTER_SQLITE3 := better-sqlite3@12.11.1
# better-sqlite3 compiles from source when its prebuilt binary (from GitHub) is out of reach:
# against Debian's node headers, not ones node-gyp would download.
NODE_HEADERS := $(if $(wildcard /usr/include/node/node.h),npm_config_nodedir=/usr)
LITESTREAM_VERSIONS := 0.5.15 0.5.17
LIVE_FIXTURES := target/live-fixtures

.PHONY: build dist test sql-test clients-test python python-test node node-test fuzz bench demo lint tools live-fixtures fixtures sql-replica clean

## build: the release library, target/release/libltxvfs.so
build:
	$(CARGO) build --release --lib

## dist: the library the packages ship (target/dist/): built for glibc 2.17 and up
## (manylinux2014) with cargo-zigbuild and zig from PyPI (.tools/zig), stripped, its debug
## info beside it in libltxvfs.so.debug (named by .gnu_debuglink), then checked
DIST := target/dist
DIST_TARGET := x86_64-unknown-linux-gnu
DIST_GLIBC := 2.17
WHEEL_PLATFORM := manylinux_2_17_x86_64.manylinux2014_x86_64
dist: tools
	PATH=$(abspath $(TOOLS)/zig/bin):$$PATH $(TOOLS)/zig/bin/cargo-zigbuild build --release --lib \
	    --target $(DIST_TARGET).$(DIST_GLIBC)
	mkdir -p $(DIST)
	objcopy --only-keep-debug target/$(DIST_TARGET)/release/libltxvfs.so $(DIST)/libltxvfs.so.debug
	objcopy --strip-debug --strip-unneeded --add-gnu-debuglink=$(DIST)/libltxvfs.so.debug \
	    target/$(DIST_TARGET)/release/libltxvfs.so $(DIST)/libltxvfs.so
	GLIBC=$(DIST_GLIBC) scripts/check-dist.sh $(DIST)/libltxvfs.so

## tools: the pinned litestream binaries the tests drive (.tools/)
tools:
	PYTHON=$(PYTHON) scripts/install-tools.sh $(TOOLS)

## live-fixtures: fresh replicas from the pinned litestream binaries, for `make test`
live-fixtures: tools
	rm -rf $(LIVE_FIXTURES)
	pids=(); for v in $(LITESTREAM_VERSIONS); do \
	    $(PYTHON) tests/fixtures/make_fixtures.py --litestream $(TOOLS)/litestream-$$v/bin/litestream \
	        --out $(LIVE_FIXTURES)/litestream-$$v & pids+=($$!); \
	done; for p in "$${pids[@]}"; do wait $$p; done

## test: unit and integration tests, on the checked-in fixtures and on fresh ones, against
## file:// replicas and real S3 (moto), Azure (Azurite) and GCS (fake-gcs-server) servers
## on 127.0.0.1
# tests-sqlite links SQLite itself, so it is built and run on its own (see Cargo.toml).
test: build live-fixtures
	LTXVFS_LIVE_FIXTURES=$(abspath $(LIVE_FIXTURES)) $(CARGO) test
	scripts/with-stores.sh $(CARGO) test -p ltxvfs-sqlite-tests
	/usr/bin/python3 tests/fork_after_use.py target/release/libltxvfs "file://$(CURDIR)/sql-tests/replica"
	/usr/bin/python3 tests/rss_bound.py target/release/libltxvfs $(TOOLS)/litestream-0.5.17/bin/litestream
	/usr/bin/python3 tests/private_journals.py target/release/libltxvfs
	$(MAKE) --no-print-directory sql-test clients-test
	$(MAKE) --no-print-directory python-test node-test

## sql-test: golden SQL scripts in the system sqlite3 shell with the built extension
sql-test: build tools
	scripts/with-stores.sh sql-tests/run.sh

## clients-test: the README's C, Go and Rust recipes, built as a user would, on the replica
clients-test: build tools
	tests/clients/run.sh

## python: the manylinux wheel of bindings/python, with the library of `make dist` in it
## (target/wheels/), its tag checked against `auditwheel show`
python: dist
	cp $(DIST)/libltxvfs.so bindings/python/src/ltxvfs/libltxvfs.so
	[[ -x $(TOOLS)/pybuild/bin/pip ]] || $(PYTHON) -m venv $(TOOLS)/pybuild
	$(TOOLS)/pybuild/bin/pip install --quiet --disable-pip-version-check $(SETUPTOOLS)
	rm -rf $(WHEEL_DIR) bindings/python/build; mkdir -p $(WHEEL_DIR)
	LTXVFS_WHEEL_PLATFORM=$(WHEEL_PLATFORM) $(TOOLS)/pybuild/bin/pip wheel --quiet \
	    --disable-pip-version-check --no-deps --no-build-isolation --wheel-dir $(WHEEL_DIR) ./bindings/python
	rm -rf bindings/python/build bindings/python/src/*.egg-info
	GLIBC=$(DIST_GLIBC) AUDITWHEEL=$(TOOLS)/zig/bin/auditwheel scripts/check-dist.sh \
	    $(DIST)/libltxvfs.so $(WHEEL_DIR)/ltxvfs-*.whl

## python-test: the wheel installed into a fresh venv of the system python, then pytest;
## the Datasette plugin's tests again with Datasette 1.0
python-test: python
	rm -rf target/py-test; $(SYSTEM_PYTHON) -m venv target/py-test
	target/py-test/bin/pip install --quiet --disable-pip-version-check $(PYTEST) $(PLUGIN_HOSTS) $(DJANGO) $(WHEEL_DIR)/ltxvfs-*.whl
	cd bindings/python/tests && LTXVFS_TEST_REPLICA=$(CURDIR)/sql-tests/replica \
	    ../../../target/py-test/bin/python -m pytest -q -p no:cacheprovider .
	rm -rf target/py-test-datasette1; $(SYSTEM_PYTHON) -m venv target/py-test-datasette1
	target/py-test-datasette1/bin/pip install --quiet --disable-pip-version-check $(PYTEST) $(DATASETTE_1) $(WHEEL_DIR)/ltxvfs-*.whl
	cd bindings/python/tests && LTXVFS_TEST_REPLICA=$(CURDIR)/sql-tests/replica \
	    ../../../target/py-test-datasette1/bin/python -m pytest -q -p no:cacheprovider test_datasette.py

## node: the npm package of bindings/node, with the library of `make dist` in it (target/npm/)
node: dist
	mkdir -p bindings/node/lib target/npm
	cp $(DIST)/libltxvfs.so bindings/node/lib/libltxvfs.so
	rm -f target/npm/ltxvfs-*.tgz
	cd bindings/node && npm pack --silent --pack-destination ../../target/npm > /dev/null
	ls target/npm/ltxvfs-*.tgz

## node-test: the packed tarball installed with better-sqlite3 into a scratch project, node:test
node-test: node
	mkdir -p target/node-test
	cd target/node-test && { [[ -f package.json ]] || echo '{"private": true, "type": "module"}' > package.json; } \
	    && rm -rf node_modules/ltxvfs \
	    && $(NODE_HEADERS) npm install --silent --no-save --no-package-lock --no-audit --no-fund \
	        $(BETTER_SQLITE3) $(CURDIR)/target/npm/ltxvfs-*.tgz
	cp bindings/node/test/*.test.mjs target/node-test/
	cd target/node-test && LTXVFS_TEST_REPLICA=$(CURDIR)/sql-tests/replica node --test *.test.mjs

## fuzz: the cargo-fuzz targets, FUZZ_SECONDS each (not in `make test`). Needs cargo-fuzz
## (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP lets the stable toolchain take its flags.
## New inputs go to fuzz/corpus/<target>/; a crash is written to fuzz/artifacts/<target>/:
## add it to tests/it/malformed.rs (or src/vfs/names.rs) as a regression test.
FUZZ_SECONDS ?= 300
FUZZ_SEEDS := $(wildcard tests/fixtures/*/replica/ltx/*)
fuzz:
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O ltx_decode corpus/ltx_decode $(addprefix ../,$(FUZZ_SEEDS)) -- \
	    -max_total_time=$(FUZZ_SECONDS) -malloc_limit_mb=128 -rss_limit_mb=1024 -timeout=5 -max_len=65536
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O settings corpus/settings -- \
	    -max_total_time=$(FUZZ_SECONDS) -malloc_limit_mb=128 -timeout=5 -max_len=4096

## bench: ltxvfs vs Litestream's VFS (not a test): one S3 replica behind a 20 ms-per-request
## proxy (bench.py), many small ones (tenants.py, BENCH_TENANTS), large ones on file://
## (scale.py, BENCH_SCALE_GB: 1 by default; "1,10" for the 10 GB one, ~30 min more)
BENCH_TENANTS ?= 50
BENCH_SCALE_GB ?= 1
## writable tenants in one process (tenants_write.py, issue #23)
BENCH_WRITE_TENANTS ?= 200
bench: build
	PYTHON=$(PYTHON) scripts/install-tools.sh $(TOOLS)
	$(TOOLS)/moto/bin/python bench/bench.py --root . --out bench/results.json $(BENCH_ARGS)
	$(TOOLS)/moto/bin/python bench/tenants.py --root . --n $(BENCH_TENANTS) --out bench/results-tenants.json
	$(TOOLS)/moto/bin/python bench/scale.py --root . --sizes-gb $(BENCH_SCALE_GB) --out bench/results-scale.json
	$(TOOLS)/moto/bin/python bench/write.py --root . --out bench/results-write.json
	$(TOOLS)/moto/bin/python bench/compaction.py --root . --out bench/results-compaction.json
	$(TOOLS)/moto/bin/python bench/fork.py --root . --out bench/results-fork.json
	$(TOOLS)/moto/bin/python bench/contention.py --root . --out bench/results-contention.json
	$(TOOLS)/moto/bin/python bench/tenants_write.py --root . --n $(BENCH_WRITE_TENANTS) --out bench/results-tenants-write.json
	$(TOOLS)/moto/bin/python bench/bookmark.py --root . --out bench/results-bookmark.json
	$(TOOLS)/moto/bin/python bench/big_txn.py --root . --out bench/results-big-txn.json

## demo: a writer and a reader process, a bookmark, litestream restore: no daemon
demo: build tools
	scripts/demo.sh

## lint: formatting and clippy, warnings denied
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p ltxvfs-sqlite-tests --all-targets -- -D warnings
	$(CARGO) clippy -p ltxvfs-client-rusqlite --all-targets -- -D warnings
	cd tests/clients/sqlx && $(CARGO) fmt --check && \
	    CARGO_TARGET_DIR=$(CURDIR)/target/clients-sqlx $(CARGO) clippy --locked -- -D warnings

## fixtures: regenerate the checked-in fixtures (tests/fixtures/litestream-*)
fixtures: tools
	for v in $(LITESTREAM_VERSIONS); do \
	    $(PYTHON) tests/fixtures/make_fixtures.py --litestream $(TOOLS)/litestream-$$v/bin/litestream \
	        --out tests/fixtures/litestream-$$v; \
	done

## sql-replica: rewrite the replica the sql-tests read (then UPDATE_EXPECTED=1 sql-tests/run.sh)
sql-replica: tools
	sql-tests/setup/make_replica.sh $(TOOLS)/litestream-0.5.17/bin/litestream

clean:
	$(CARGO) clean
	rm -rf $(TOOLS)
