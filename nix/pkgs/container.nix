# The OCI image (docker load-able tarball): pmcd in the foreground as the
# non-root pcp user, only pmcd's and pmproxy's ports exposed, PCP_CONF set,
# writable /var/lib/pcp, /var/log/pcp and /run/pcp owned by pcp, and
# /etc/passwd and /etc/group that know pcp. User name, UID/GID and image name
# come from nix/constants.json.
{
  pkgs,
  lib,
  pcp,
}:
let
  constants = builtins.fromJSON (builtins.readFile ../constants.json);
  inherit (constants) container ports;
  uid = toString container.uid;
  gid = toString container.gid;
  layout = import ./pcp-layout.nix pcp;
  layoutCheck = pkgs.callPackage ./pcp-layout-check.nix { inherit pcp; };

  etcFiles = pkgs.runCommand "pcp-container-etc" { } ''
    mkdir -p $out/etc
    cat > $out/etc/passwd <<EOF
    root:x:0:0:root:/root:/sbin/nologin
    ${container.user}:x:${uid}:${gid}:Performance Co-Pilot:/var/lib/pcp:/sbin/nologin
    nobody:x:65534:65534:nobody:/var/empty:/sbin/nologin
    EOF
    cat > $out/etc/group <<EOF
    root:x:0:
    ${container.user}:x:${gid}:
    nogroup:x:65534:
    EOF
    ln -s ${layout.conf} $out/etc/pcp.conf
    ln -s ${layout.env} $out/etc/pcp.env
    # pmcd runs unprivileged: the linux PMDA is a DSO inside pmcd (a separate
    # PMDA process would try to setgid to root and die), and pmproxy serves
    # the REST API without Redis. The same files and entrypoint are used by
    # the Debian-built test image, so the integration test checks them.
    install -D -m 0644 ${../container/pmcd.conf} $out/etc/pcp/pmcd/pmcd.conf
    install -D -m 0644 ${../container/pmproxy.conf} $out/etc/pcp/pmproxy/pmproxy.conf
    install -D -m 0755 ${../container/entrypoint.sh} $out/usr/local/bin/pcp-entrypoint
  '';
in
pkgs.dockerTools.buildLayeredImage {
  name = container.imageName;
  tag = "nix";
  contents = [
    etcFiles
    pcp
    pkgs.bashInteractive
    pkgs.coreutils
  ];
  fakeRootCommands = ''
    # The image is only built for a PCP with the expected layout.
    test -e ${layoutCheck}
    mkdir -p var/lib/pcp/tmp var/log/pcp/pmcd var/log/pcp/pmproxy run/pcp tmp
    ln -sfn ${layout.varLib}/pmns var/lib/pcp/pmns
    ln -sfn ${layout.varLib}/pmdas var/lib/pcp/pmdas
    ln -sfn ${layout.varLib}/pmcd var/lib/pcp/pmcd
    ln -sfn ${layout.varLib}/config var/lib/pcp/config
    chown -R ${uid}:${gid} var/lib/pcp var/log/pcp run/pcp
    chmod 1777 tmp
  '';
  enableFakechroot = false;
  config = {
    User = "${uid}:${gid}";
    Entrypoint = [ "/usr/local/bin/pcp-entrypoint" ];
    Env = [
      "PCP_CONF=${layout.conf}"
      # PCP's scripts source $PCP_DIR/etc/pcp.env (pcp-layout.nix).
      "PCP_DIR=${layout.dir}"
      "PCP_BINADM_DIR=${layout.bin}"
      "PCP_SYSCONF_DIR=/etc/pcp"
      "PCP_PMCDCONF_PATH=/etc/pcp/pmcd/pmcd.conf"
      "PCP_LOG_DIR=/var/log/pcp"
      "PCP_VAR_DIR=/var/lib/pcp"
      "PCP_TMP_DIR=/var/lib/pcp/tmp"
      "PCP_RUN_DIR=/run/pcp"
      "PMCD_PORT=${toString ports.pmcd}"
      "PMPROXY_PORT=${toString ports.pmproxy}"
      "PATH=${pcp}/bin:${layout.bin}:/bin"
    ];
    ExposedPorts = {
      "${toString ports.pmcd}/tcp" = { };
      "${toString ports.pmproxy}/tcp" = { };
    };
    WorkingDir = "/var/lib/pcp";
    Labels = {
      "org.opencontainers.image.title" = "pcp-eval PCP (pmcd + pmproxy)";
      "org.opencontainers.image.source" = "pcp-eval nix/pkgs/container.nix";
    };
  };
}
