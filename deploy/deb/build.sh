#!/usr/bin/env bash
# Builds the Debian package of mtugate: target/debian/mtugate_<version>_<arch>.deb
#
# Usage: bash deploy/deb/build.sh [--no-build]
#   --no-build  package the release binaries already in target/release
#
# One dpkg-deb call over a tree assembled here, with the control files of
# deploy/deb/DEBIAN and deploy/deb/control.in: no debhelper source package,
# no cargo-deb (nothing to install or compile beyond the workspace; dpkg-deb
# and dpkg-shlibdeps come with dpkg / dpkg-dev). What goes where:
#
#   /usr/bin/mtugate, /usr/bin/mtugate-perf        stripped release binaries
#   /etc/mtugate/mtugate.toml                      conffile; names no port yet
#   /lib/systemd/system/mtugate.service            deploy/mtugate.service
#   /usr/lib/tmpfiles.d/mtugate.conf               the pin directory /sys/fs/bpf/mtugate
#   /usr/share/man/man1/mtugate*.1.gz              generated from the CLI (clap_mangen)
#   /usr/share/bash-completion/completions/        generated (clap_complete), also
#   /usr/share/zsh/vendor-completions/             zsh and fish
#   /usr/share/fish/vendor_completions.d/
#   /usr/share/mtugate/prometheus/mtugate-rules.yml  alert rules
#   /usr/share/mtugate/grafana/mtugate.json          dashboard
#   /usr/share/doc/mtugate/                        README, examples/*.toml, copyright, changelog
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"

if [[ ${1:-} != --no-build ]]; then
  cargo build --release -p mtugate -p mtugate-perf --locked
fi
for b in mtugate mtugate-perf; do
  [[ -x target/release/$b ]] || { echo "deb: target/release/$b missing: build it first" >&2; exit 1; }
done

# Version: the workspace's, plus the git revision the binary carries
# (`mtugate --version` prints "0.1.0 (rev 1a2b3c4d5e6f)").
ver=$(target/release/mtugate --version | awk '{print $2}')
rev=$(target/release/mtugate --version | sed -n 's/.*(rev \([^)]*\)).*/\1/p')
[[ -n $ver ]] || { echo "deb: cannot read the version" >&2; exit 1; }
debver=$ver
if [[ -n $rev && $rev != unknown ]]; then
  debver="$ver+git${rev//-/.}"
fi
arch=$(dpkg --print-architecture)

out=target/debian
root=$out/root
rm -rf "$root"
mkdir -p "$root/DEBIAN"
install -d -m 0755 "$root"/usr/bin "$root"/etc/mtugate "$root"/lib/systemd/system \
  "$root"/usr/share/man/man1 "$root"/usr/share/bash-completion/completions \
  "$root"/usr/share/zsh/vendor-completions "$root"/usr/share/fish/vendor_completions.d \
  "$root"/usr/share/mtugate/prometheus "$root"/usr/share/mtugate/grafana \
  "$root"/usr/share/doc/mtugate/examples

for b in mtugate mtugate-perf; do
  install -m 0755 "target/release/$b" "$root/usr/bin/$b"
  # The release profile keeps debug info for profiling; a package ships
  # without it (Debian policy 10.1).
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/$b"
done

install -m 0644 deploy/deb/mtugate.toml "$root/etc/mtugate/mtugate.toml"
install -m 0644 deploy/mtugate.service "$root/lib/systemd/system/mtugate.service"
install -d -m 0755 "$root/usr/lib/tmpfiles.d"
install -m 0644 deploy/deb/mtugate.tmpfiles "$root/usr/lib/tmpfiles.d/mtugate.conf"

gen=$out/gen
rm -rf "$gen"
"$root/usr/bin/mtugate" generate "$gen" >/dev/null
"$root/usr/bin/mtugate-perf" generate "$gen" >/dev/null
for m in "$gen"/man/*.1; do
  gzip -9n <"$m" >"$root/usr/share/man/man1/$(basename "$m").gz"
done
for b in mtugate mtugate-perf; do
  install -m 0644 "$gen/completions/$b.bash" "$root/usr/share/bash-completion/completions/$b"
  install -m 0644 "$gen/completions/_$b" "$root/usr/share/zsh/vendor-completions/_$b"
  install -m 0644 "$gen/completions/$b.fish" "$root/usr/share/fish/vendor_completions.d/$b.fish"
done

install -m 0644 deploy/prometheus/mtugate-rules.yml "$root/usr/share/mtugate/prometheus/mtugate-rules.yml"
install -m 0644 deploy/grafana/mtugate.json "$root/usr/share/mtugate/grafana/mtugate.json"

doc=$root/usr/share/doc/mtugate
install -m 0644 deploy/deb/copyright "$doc/copyright"
gzip -9n <README.md >"$doc/README.md.gz"
for c in deploy/configs/*.toml; do
  install -m 0644 "$c" "$doc/examples/$(basename "$c")"
done
# A native package's changelog: this version, from git.
{
  echo "mtugate ($debver) unstable; urgency=medium"
  echo
  echo "  * Built from revision ${rev:-unknown}. See /usr/share/doc/mtugate/README.md.gz."
  echo
  echo " -- mtugate maintainers <mtugate@example.invalid>  $(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n >"$doc/changelog.gz"

for f in postinst prerm postrm; do
  install -m 0755 "deploy/deb/DEBIAN/$f" "$root/DEBIAN/$f"
done
install -m 0644 deploy/deb/DEBIAN/conffiles "$root/DEBIAN/conffiles"

# Shared-library dependencies, as dpkg-shlibdeps finds them (it reads a
# debian/control of its own: a scratch one).
shl=$out/shlibs
rm -rf "$shl"
mkdir -p "$shl/debian"
printf 'Source: mtugate\n\nPackage: mtugate\nArchitecture: any\n' >"$shl/debian/control"
shlibs=$(cd "$shl" && dpkg-shlibdeps -O "$OLDPWD/$root/usr/bin/mtugate" "$OLDPWD/$root/usr/bin/mtugate-perf" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')
[[ -n $shlibs ]] || { echo "deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$debver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@SHLIBS@/$shlibs/" \
  deploy/deb/control.in >"$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"

rm -f "$out"/mtugate_*.deb # only this build's package is left
deb=$out/mtugate_${debver}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
