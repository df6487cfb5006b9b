# PCP built from an upstream source tree (the pcp-src flake input), for
# sources that do not carry their own nix/package.nix. Autotools build with
# the BPF PMDA on (pre-compiled CO-RE modules need clang and bpftool at build
# time, libbpf and libelf at run time). The install is laid out as
# nix/modules/pcp.nix expects (pcp-layout.nix): $out/share/pcp/etc/pcp.conf,
# $out/libexec/pcp/bin, $out/var/lib/pcp/{pmns,pmdas,config}, with the root
# PMNS merged. Everything is installed inside $out; the runtime directories
# (/var/log/pcp, /run/pcp, /var/lib/pcp/tmp) are made on the target by the
# module's tmpfiles rules.
{
  lib,
  stdenv,
  src,
  autoconf,
  automake,
  pkg-config,
  bison,
  flex,
  which,
  perl,
  python3,
  makeWrapper,
  zlib,
  ncurses,
  readline,
  openssl,
  libuv,
  cyrus_sasl,
  inih,
  xz,
  avahi,
  systemd,
  libpfm,
  libbpf,
  elfutils,
  bpftools,
  llvmPackages,
}:
let
  versionFile = builtins.readFile "${src}/VERSION.pcp";
  field =
    name:
    let
      m = builtins.match ".*${name}=([0-9]+).*" (builtins.replaceStrings [ "\n" ] [ " " ] versionFile);
    in
    if m == null then throw "pcp-upstream: no ${name} in VERSION.pcp" else builtins.head m;
in
stdenv.mkDerivation {
  pname = "pcp";
  version = "${field "PACKAGE_MAJOR"}.${field "PACKAGE_MINOR"}.${field "PACKAGE_REVISION"}";
  inherit src;

  nativeBuildInputs = [
    autoconf
    automake
    pkg-config
    bison
    flex
    which
    perl
    python3
    python3.pkgs.setuptools
    makeWrapper
    llvmPackages.clang
    llvmPackages.llvm
    bpftools
  ];

  buildInputs = [
    zlib
    ncurses
    readline
    openssl
    libuv
    cyrus_sasl
    inih
    xz
    python3
    perl
    avahi
    systemd
    libpfm
    libbpf
    elfutils
  ];

  # The BPF modules are compiled with clang for the BPF target.
  hardeningDisable = [ "zerocallusedregs" ];

  postPatch = ''
    patchShebangs src build configure scripts man
    # Build scripts default to /var/tmp, which the build sandbox lacks.
    for f in $(grep -rl --include=mk.rewrite '/var/tmp' src/pmdas || true); do
      sed -i "s|/var/tmp|$TMPDIR|g" "$f"
    done
  '';

  preConfigure = ''
    export AR="${stdenv.cc.bintools.bintools}/bin/ar"
    export SYSTEMD_SYSTEMUNITDIR=$out/lib/systemd/system
    export SYSTEMD_TMPFILESDIR=$out/lib/tmpfiles.d
    export SYSTEMD_SYSUSERSDIR=$out/lib/sysusers.d
  '';

  configureFlags = [
    "--prefix=${placeholder "out"}"
    "--sysconfdir=${placeholder "out"}/etc"
    "--localstatedir=${placeholder "out"}/var"
    "--with-rcdir=${placeholder "out"}/etc/init.d"
    "--with-tmpdir=/tmp"
    # Inside $out so `make install` never writes to the build machine's
    # /var/log; postInstall removes it (the target's /var/log/pcp is made by
    # tmpfiles).
    "--with-logdir=${placeholder "out"}/var/log/pcp"
    "--with-rundir=/run/pcp"
    "--with-user=pcp"
    "--with-group=pcp"
    "--with-make=make"
    "--with-tar=tar"
    "--with-python3=${lib.getExe python3}"
    "--with-systemd=yes"
    "--with-pmdabpf=yes"
    "--with-pmdabcc=no"
    "--with-pmdabpftrace=no"
    "--with-qt=no"
    "--with-selinux=no"
    "--with-infiniband=no"
    "--with-dstat-symlink=no"
  ];

  # Installing into $out only: no chown to pcp:pcp inside the sandbox.
  preInstall = ''
    export NO_CHOWN=true
  '';

  postInstall = ''
    # pmcd needs one root PMNS; `make install` leaves only the per-agent
    # root_* parts (a distribution merges them at package install time with
    # pmnsmerge, as upstream's own nix/package.nix does in its postInstall).
    pmns=$out/var/lib/pcp/pmns
    if [ ! -s "$pmns/root" ]; then
      parts=$( (find $out/libexec/pcp/pmns $pmns -maxdepth 1 -name 'root_*' ! -name root_root 2>/dev/null || true) | sort)
      base=$( (find $out/libexec/pcp/pmns $pmns -maxdepth 1 -name root_root 2>/dev/null || true) | head -n 1)
      [ -n "$base" ] || { echo "pcp-upstream: no root_root PMNS part to merge" >&2; exit 1; }
      PCP_CONF=$out/etc/pcp.conf $out/libexec/pcp/bin/pmnsmerge -a "$base" $parts "$pmns/root"
    fi

    # Runtime state is created on the target (tmpfiles), not in the store.
    rm -rf $out/var/log $out/var/run $out/var/lib/pcp/tmp

    # Configuration moves under share/, and pcp.conf follows it.
    mkdir -p $out/share/pcp/etc
    mv $out/etc/* $out/share/pcp/etc/
    rmdir $out/etc
    substituteInPlace $out/share/pcp/etc/pcp.conf \
      --replace-quiet "PCP_ETC_DIR=$out/etc" "PCP_ETC_DIR=$out/share/pcp/etc" \
      --replace-quiet "$out/etc/pcp" "$out/share/pcp/etc/pcp" \
      --replace-quiet "$out/etc/sysconfig" "$out/share/pcp/etc/sysconfig"
    find $out/var/lib/pcp -type l | while read -r link; do
      target=$(readlink "$link")
      case "$target" in
        */etc/pcp/*) ln -sfn "$out/share/pcp/etc/pcp/''${target#*/etc/pcp/}" "$link" ;;
      esac
    done
  '';

  meta = {
    description = "Performance Co-Pilot, built from the pinned upstream source";
    homepage = "https://pcp.io";
    license = lib.licenses.lgpl21Plus;
    platforms = lib.platforms.linux;
    mainProgram = "pminfo";
  };
}
