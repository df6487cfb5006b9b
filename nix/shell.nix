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
  shellHook = ''
    echo "pcp-eval dev shell: npm ci, then npm test" >&2
  '';
}
