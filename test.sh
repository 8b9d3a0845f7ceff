#!/usr/bin/env bash
# test.sh runs every test of hotline: it installs what the tests need when it
# is missing, then runs gofmt, go vet, staticcheck, the tests with -race, a
# short fuzz run of every Fuzz target, and the same checks in bench/.
# go.mod must be tidy (go mod tidy -diff) in both modules.
#
# Environment:
#   FUZZTIME  -fuzztime per fuzz target: a count of inputs such as 20000x
#             (the default), or a duration; 0 skips fuzzing
#   CI        exported as "true" when unset, so that tests needing a peer
#             or tool fail instead of skipping (this script installs them)
#
# Every check runs even when an earlier one fails; the script exits 1 if
# any failed and says which. A dependency that cannot be installed stops it
# at once.
set -euo pipefail

cd "$(dirname "$0")"

# Pinned tools. staticcheck 2026.2.2 (v0.8.2) is the first release known to
# work with Go 1.26 here.
STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2
APT_PACKAGES=(redis-server redis-tools chromium python3-websockets nginx-light apache2 util-linux)
NODE_DIR=internal/interop/node
FUZZTIME=${FUZZTIME:-20000x}
export CI=${CI:-true}

start=$SECONDS
failed=()

section() {
	printf '\n==== %s ====\n' "$*"
}

die() {
	printf '\ntest.sh: FATAL: %s\n' "$*" >&2
	exit 1
}

# step NAME CMD...: runs CMD, records NAME as failed when it fails.
step() {
	local name=$1 t0=$SECONDS
	shift
	if "$@"; then
		printf -- '---- %s: ok (%ds)\n' "$name" $((SECONDS - t0))
	else
		printf -- '---- %s: FAILED (%ds)\n' "$name" $((SECONDS - t0))
		failed+=("$name")
	fi
}

# ---------------------------------------------------------------- deps

deb_installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

install_apt() {
	local missing=() p
	for p in "$@"; do
		deb_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "installing Debian packages: ${missing[*]}"
	command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "not root and no sudo; install by hand: ${missing[*]}"
		sudo=(sudo)
	fi
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		die "apt-get update failed"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"
	for p in "${missing[@]}"; do
		deb_installed "$p" || die "Debian package $p is still not installed"
	done
}

section "dependencies"
command -v go >/dev/null || die "go not found on PATH"
go version
[ -f go.mod ] || die "no go.mod in $(pwd)"

need=("${APT_PACKAGES[@]}")
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	need+=(nodejs npm)
fi
install_apt "${need[@]}"

command -v chromium >/dev/null || die "chromium not on PATH after install"
/usr/bin/python3 -c 'import websockets' ||
	die "/usr/bin/python3 cannot import websockets after install"
command -v node >/dev/null || die "node not on PATH after install"

# npm ci when node_modules is missing or older than the lock file.
if [ ! -f "$NODE_DIR/node_modules/.package-lock.json" ] ||
	[ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
	echo "npm ci in $NODE_DIR"
	(cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
		die "npm ci in $NODE_DIR failed"
fi

printf 'python3-websockets %s, node %s, node ws %s\n' \
	"$(/usr/bin/python3 -c 'import websockets; print(websockets.__version__)')" \
	"$(node --version)" \
	"$(node -p "require('./$NODE_DIR/node_modules/ws/package.json').version")"
echo "dependencies: ok ($((SECONDS - start))s)"

# ---------------------------------------------------------------- checks

gofmt_check() {
	local out
	out=$(gofmt -l .) || return 1
	if [ -n "$out" ]; then
		echo "gofmt -l: these files need gofmt -w:"
		echo "$out"
		return 1
	fi
}

staticcheck() {
	go run "$STATICCHECK" ./...
}

# fuzz_one fuzzes one target. go test -fuzz sometimes ends with "context
# deadline exceeded" and no failing input when its time runs out during a
# minimization (a flake of the fuzzer, not of the code); such a run is tried
# once more. A real failure writes its input under testdata/ and fails.
fuzz_one() {
	local pkg=$1 name=$2 out
	if out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1); then
		echo "$out" | tail -n 3
		return 0
	fi
	echo "$out"
	if grep -q 'Failing input written' <<<"$out"; then
		return 1
	fi
	echo "-- $name failed without a failing input; running it once more"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime="$FUZZTIME" "$pkg"
}

# fuzz_all runs every Fuzz target of the main module for FUZZTIME each.
fuzz_all() {
	local list targets=() pkg name line rc=0
	# A package that does not build cannot list its targets: fuzz the
	# others, and fail.
	if ! list=$(go test -list '^Fuzz' ./... 2>/dev/null); then
		echo "go test -list failed for some packages (see go test above):"
		grep '^FAIL' <<<"$list" || true
		rc=1
	fi
	# go test -list prints a package's names, then its "ok  pkg  time" line.
	local names=()
	while IFS= read -r line; do
		case $line in
		Fuzz*) names+=("$line") ;;
		ok*)
			pkg=$(awk '{print $2}' <<<"$line")
			for name in "${names[@]}"; do
				targets+=("$pkg $name")
			done
			names=()
			;;
		FAIL*) names=() ;;
		esac
	done <<<"$list"
	if [ ${#targets[@]} -eq 0 ]; then
		echo "no Fuzz targets found"
		return $rc
	fi
	echo "${#targets[@]} fuzz targets, $FUZZTIME each"
	local t
	for t in "${targets[@]}"; do
		read -r pkg name <<<"$t"
		echo "-- $name ($pkg)"
		fuzz_one "$pkg" "$name" || rc=1
	done
	return $rc
}

in_bench() {
	(cd bench && "$@")
}

section "gofmt"
step gofmt gofmt_check

section "go vet"
step "go vet" go vet ./...

section "go mod tidy -diff"
step "go mod tidy" go mod tidy -diff

section "staticcheck ($STATICCHECK)"
step staticcheck staticcheck

section "go test -race"
step "go test" go test -race -count=1 ./...

section "allocation tests (without -race, which allocates on its own)"
step "allocs" go test -count=1 -run 'Alloc' ./...

section "fuzz (${FUZZTIME} per target)"
if [ "$FUZZTIME" = 0 ]; then
	echo "skipped: FUZZTIME=0"
else
	step fuzz fuzz_all
fi

if [ -f bench/go.mod ]; then
	section "bench module: go mod tidy -diff"
	step "bench: go mod tidy" in_bench go mod tidy -diff
	section "bench module: go vet"
	step "bench: go vet" in_bench go vet ./...
	section "bench module: staticcheck"
	step "bench: staticcheck" in_bench staticcheck
	section "bench module: go test -race"
	step "bench: go test" in_bench go test -race -count=1 ./...
	# The harnesses behind the README's tables, at small sizes: they fail
	# when a server dies or a delivery is lost, duplicated or out of order,
	# never on speed. Centrifugo is left out here (its go install takes
	# many minutes); bench/push/run.sh without -servers runs it.
	section "bench: wsbench -quick (every WebSocket library beside hotline's)"
	step "bench: wsbench" in_bench go run ./ws/cmd/wsbench -quick
	section "bench: pushbench -quick (hotline, hotline -event-loop, Socket.IO)"
	step "bench: pushbench" bench/push/run.sh -quick -servers hotline,hotline-eventloop,socketio \
		-out "$(mktemp -d)" -readme ''
fi

section "summary ($((SECONDS - start))s)"
if [ ${#failed[@]} -gt 0 ]; then
	printf 'FAILED: %s\n' "${failed[@]}"
	exit 1
fi
echo "all checks passed"
