# devShells.default: what a user needs to run pcp-eval and its tests.
{ pkgs }:
pkgs.mkShell {
  name = "pcp-eval";
  packages = with pkgs; [
    pulumi-bin
    nodejs_22
    kubectl
    minikube
    qemu
    nix
    jq
    curl
    shellcheck
    iproute2
    nftables
    docker-client
    prometheus-node-exporter
    openssh
    socat
    go
  ];
  # Node's compile cache for the Pulumi program (a new Node.js process per
  # engine pass), where scripts/up.sh puts it. go builds provider/ (the host
  # resources' plugin), which the program does on the first run of a checkout.
  shellHook = ''
    export NODE_COMPILE_CACHE="''${NODE_COMPILE_CACHE:-''${PCP_EVAL_CACHE_DIR:-''${XDG_CACHE_HOME:-$HOME/.cache}/pcp-eval}/node-compile-cache}"
    echo "pcp-eval dev shell: npm ci, then npm test" >&2
  '';
}
