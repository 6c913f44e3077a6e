#!/usr/bin/env bash
# Builds the vigil .deb for a room mini-PC (README.md, "Install on a room
# mini-PC"):
#
#   scripts/package.sh OUTDIR       writes OUTDIR/vigil_<version>_<arch>.deb
#   scripts/package.sh --version    prints the binary's and the package's version
#
# The binary is static (CGO_ENABLED=0), built with -trimpath and stamped with
# its version (main.version in cmd/vigil) from `git describe`. The package is
# made by nfpm (configs/packaging/nfpm.yaml) through `go run module@version`,
# which keeps nfpm and its many dependencies out of vigil's go.mod. The first
# run downloads and builds nfpm (about 1.5 minutes on 2 cores); later runs
# take it from the Go build cache.
#
# Environment:
#   VIGIL_VERSION      the binary's version (default: git describe --tags
#                      --always --dirty, or "dev" outside git)
#   VIGIL_DEB_VERSION  the package's version (default: derived from the
#                      above in Debian syntax)
#   VIGIL_MAINTAINER   the package's Maintainer field, "Name <address>"
#   GOARCH             target architecture (default: this machine's)
set -euo pipefail
cd "$(dirname "$0")/.."

nfpm_module=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

# debian_version turns a git-describe version into Debian version syntax
# (deb-version(5)) that sorts the same way:
#   v1.2.3                 -> 1.2.3
#   v1.2.3-4-gabc1234      -> 1.2.3+4.gabc1234   (4 commits after the tag)
#   v1.2.3-rc.1            -> 1.2.3~rc.1         (sorts before 1.2.3)
#   v1.2.3-dirty           -> 1.2.3+dirty
#   abc1234 (no tag), dev  -> 0.0.0~git.abc1234, 0.0.0~git.dev
debian_version() {
	local v="${1#v}" dirty="" deb
	if [[ $v == *-dirty ]]; then
		v="${v%-dirty}"
		dirty=1
	fi
	if [[ $v =~ ^([0-9][^-]*(-[^-]+)*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		deb="${BASH_REMATCH[1]}+${BASH_REMATCH[3]}.g${BASH_REMATCH[4]}"
	elif [[ $v =~ ^[0-9] ]]; then
		deb="$v"
	else
		deb="0.0.0~git.$v"
	fi
	# A hyphen would start a Debian revision; in a tag it marks a
	# pre-release, which '~' sorts before the release.
	deb="${deb//-/\~}"
	if [ -n "$dirty" ]; then
		if [[ $deb == *+* ]]; then deb="$deb.dirty"; else deb="$deb+dirty"; fi
	fi
	# Anything else a tag might hold becomes '.'.
	printf '%s' "$deb" | tr -c 'A-Za-z0-9.+~' '.'
}

version="${VIGIL_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
deb_version="${VIGIL_DEB_VERSION:-$(debian_version "$version")}"

if [ "${1:-}" = --version ]; then
	printf '%s %s\n' "$version" "$deb_version"
	exit 0
fi
out="${1:?usage: scripts/package.sh OUTDIR | --version}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

goarch="${GOARCH:-$(go env GOARCH)}"
case "$goarch" in
amd64 | arm64 | riscv64 | ppc64le | s390x) deb_arch="$goarch" ;;
arm) deb_arch=armhf ;;
386) deb_arch=i386 ;;
*) echo "package.sh: no Debian architecture for GOARCH=$goarch" >&2; exit 1 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "==> building vigil $version for linux/$goarch"
# -buildvcs=auto stamps the git revision that `vigil version` prints where
# git can read the repository (the environment may say false).
buildvcs=auto
git rev-parse --git-dir >/dev/null 2>&1 || buildvcs=false
CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" GOFLAGS="-buildvcs=$buildvcs" \
	go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$work/vigil" ./cmd/vigil

echo "==> writing the copyright file"
# The license of every module linked into the binary, from the module
# cache: the binary carries them, so the package must name them.
{
	cat configs/packaging/copyright
	go list -m -f '{{.Path}} {{.Dir}}' all >"$work/module-dirs"
	go version -m "$work/vigil" | awk '$1 == "dep" { print $2, $3 }' | while read -r path modversion; do
		dir="$(awk -v p="$path" '$1 == p { print $2; exit }' "$work/module-dirs")"
		printf '\n%s\n' "------------------------------------------------------------------------"
		printf '%s %s\n\n' "$path" "$modversion"
		license=""
		for name in LICENSE LICENSE.txt LICENSE.md LICENCE COPYING LICENSE-APACHE; do
			if [ -n "$dir" ] && [ -f "$dir/$name" ]; then
				license="$dir/$name"
				break
			fi
		done
		if [ -n "$license" ]; then
			cat "$license"
		else
			echo "(no license file found in the module's source: see its repository)"
			echo "package.sh: warning: no license file for $path $modversion" >&2
		fi
	done
} >"$work/copyright"

echo "==> packaging with nfpm ($nfpm_module)"
export VIGIL_BINARY="$work/vigil" VIGIL_COPYRIGHT="$work/copyright"
export VIGIL_DEB_VERSION="$deb_version" VIGIL_ARCH="$deb_arch"
export VIGIL_MAINTAINER="${VIGIL_MAINTAINER:-Vigil maintainers <vigil@localhost>}"
# -mod=mod: `go run module@version` resolves nfpm's own dependencies and
# never reads or writes vigil's go.mod.
GOFLAGS=-mod=mod go run "$nfpm_module" package -f configs/packaging/nfpm.yaml -p deb -t "$out"
echo "==> $out/vigil_${deb_version}_${deb_arch}.deb"
