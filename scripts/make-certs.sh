#!/usr/bin/env bash
# Makes a test certificate authority and the certificates a knncluster needs, with Debian's
# openssl and P-256 EC keys (fast: well under a second for a few workers).
#
#   scripts/make-certs.sh OUTDIR [--workers N] [--san DNS:host,IP:10.0.0.5,...] [--days D]
#
# Writes to OUTDIR (PEM files; keys are mode 0600):
#   ca.pem, ca-key.pem                 the cluster's CA (servers and clients trust ca.pem)
#   coordinator.pem, coordinator-key.pem   CN=knn-coordinator   (serverAuth + clientAuth)
#   worker-1.pem, worker-1-key.pem ... CN=knn-worker-1 ...      (serverAuth + clientAuth)
#   client.pem, client-key.pem         CN=knn-client            (clientAuth only)
#   rogue-ca.pem, rogue-ca-key.pem     a second, unrelated CA (for tests: trusted by nobody)
#   rogue-coordinator.pem, -key.pem    CN=knn-coordinator signed by the rogue CA (for tests)
# Server certificates carry subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1, their own name
# (DNS:knn-coordinator, DNS:knn-worker-N) and whatever --san adds (the hosts the cluster's
# members are reached at).
#
# The roles are the certificates' common names: a worker accepts calls only from a peer whose
# verified certificate has CN knn-coordinator, and the coordinator's Membership service only from
# CN knn-worker or knn-worker-*. Idempotent: files already in OUTDIR are kept (the CA is made
# once), missing ones are made; delete OUTDIR to start over.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR [--workers N] [--san LIST] [--days D]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
out=$1; shift
workers=2
extra_san=""
days=365
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) [[ $# -ge 2 ]] || usage; workers=$2; shift 2 ;;
    --san) [[ $# -ge 2 ]] || usage; extra_san=",$2"; shift 2 ;;
    --days) [[ $# -ge 2 ]] || usage; days=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ "$workers" =~ ^[0-9]+$ ]] || { echo "make-certs: --workers expects a number" >&2; exit 2; }
command -v openssl > /dev/null || { echo "make-certs: openssl not found (apt-get install openssl)" >&2; exit 1; }

mkdir -p "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

# ca NAME CN: a self-signed CA in NAME.pem / NAME-key.pem.
ca() {
  local name=$1 cn=$2
  [[ -s "$out/$name.pem" && -s "$out/$name-key.pem" ]] && return 0
  openssl req -x509 "${newkey[@]}" -keyout "$out/$name-key.pem" -out "$out/$name.pem" \
    -days "$days" -subj "/O=knncluster test/CN=$cn" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2> /dev/null
}

# leaf NAME CN USAGE SAN CA: a certificate for CN signed by CA, in NAME.pem / NAME-key.pem.
leaf() {
  local name=$1 cn=$2 usage=$3 san=$4 signer=$5
  [[ -s "$out/$name.pem" && -s "$out/$name-key.pem" ]] && return 0
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n "$san" ]] && echo "subjectAltName=$san"
  } > "$tmp/$name.ext"
  openssl req "${newkey[@]}" -keyout "$out/$name-key.pem" -out "$tmp/$name.csr" \
    -subj "/O=knncluster test/CN=$cn" 2> /dev/null
  openssl x509 -req -in "$tmp/$name.csr" -CA "$out/$signer.pem" -CAkey "$out/$signer-key.pem" \
    -CAcreateserial -CAserial "$tmp/$signer.srl" -days "$days" -extfile "$tmp/$name.ext" \
    -out "$out/$name.pem" 2> /dev/null
}

local_san="DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
ca ca "knncluster test CA"
leaf coordinator knn-coordinator serverAuth,clientAuth "DNS:knn-coordinator,$local_san$extra_san" ca
for i in $(seq 1 "$workers"); do
  leaf "worker-$i" "knn-worker-$i" serverAuth,clientAuth "DNS:knn-worker-$i,$local_san$extra_san" ca
done
leaf client knn-client clientAuth "" ca
ca rogue-ca "rogue test CA"
leaf rogue-coordinator knn-coordinator serverAuth,clientAuth "DNS:knn-coordinator,$local_san" rogue-ca
chmod 0644 "$out"/*.pem
chmod 0600 "$out"/*-key.pem
echo "make-certs: certificates in $out (CA ca.pem; coordinator, $workers worker(s), client)" >&2
