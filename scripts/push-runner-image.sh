#!/usr/bin/env bash
# Build the runner image for the Fargate architecture and push it to ECR; prints the image URI
# to pass as the stack's RunnerImageUri. The ECR repository is created if it is missing.
#
#   scripts/push-runner-image.sh --region eu-west-1 [--arch arm64|x86_64] [--repository aef-runner]
#                                [--tag TAG] [--account ID] [--dry-run]
#
# --arch must match the template's RunnerArchitecture (ARM64 -> arm64, the default). The image
# is built with `docker buildx --platform`, so an x86 laptop builds arm64 (through QEMU) and an
# arm64 laptop builds x86_64: never "whatever this machine is". --dry-run prints the commands
# (and the URI) without running any of them. Needs: aws CLI v2, docker with buildx.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

arch=arm64
repository=aef-runner
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
account="${AWS_ACCOUNT_ID:-}"
tag=""
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="${2:-}"; shift 2 ;;
    --region) region="${2:-}"; shift 2 ;;
    --repository) repository="${2:-}"; shift 2 ;;
    --tag) tag="${2:-}"; shift 2 ;;
    --account) account="${2:-}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "push-runner-image: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$arch" in
  arm64|ARM64|aarch64) arch=arm64; platform=linux/arm64 ;;
  x86_64|X86_64|amd64) arch=x86_64; platform=linux/amd64 ;;
  *) echo "push-runner-image: --arch must be arm64 or x86_64 (the stack's RunnerArchitecture)" >&2
     exit 2 ;;
esac
if [ -z "$region" ]; then
  echo "push-runner-image: no region: pass --region or set AWS_REGION" >&2
  exit 2
fi
if ! [[ "$repository" =~ ^[a-z0-9][a-z0-9._/-]*$ ]]; then
  echo "push-runner-image: invalid repository name: $repository" >&2
  exit 2
fi
if [ -z "$tag" ]; then
  # the commit, so an image is traceable to its source; a dirty tree gets a timestamp too
  tag="$(git rev-parse --short=12 HEAD 2>/dev/null || echo manual)"
  if [ -n "$(git status --porcelain 2>/dev/null)" ]; then tag="$tag-dirty-$(date -u +%Y%m%d%H%M%S)"; fi
  tag="$tag-$arch"
fi
if [ -z "$account" ]; then
  if [ "$dry_run" = 1 ]; then
    account="ACCOUNT_ID"
  else
    account="$(aws sts get-caller-identity --query Account --output text)"
  fi
fi
registry="$account.dkr.ecr.$region.amazonaws.com"
uri="$registry/$repository:$tag"

run() {
  if [ "$dry_run" = 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

ensure_repository() {
  if [ "$dry_run" = 1 ]; then
    echo "+ aws ecr describe-repositories --region $region --repository-names $repository" \
         "|| aws ecr create-repository --region $region --repository-name $repository" \
         "--image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true"
    return
  fi
  if ! aws ecr describe-repositories --region "$region" --repository-names "$repository" \
       >/dev/null 2>&1; then
    echo "push-runner-image: creating ECR repository $repository" >&2
    aws ecr create-repository --region "$region" --repository-name "$repository" \
      --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true >/dev/null
  fi
}

login() {
  if [ "$dry_run" = 1 ]; then
    echo "+ aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
    return
  fi
  aws ecr get-login-password --region "$region" \
    | docker login --username AWS --password-stdin "$registry" >/dev/null
}

ensure_repository
login
# --provenance=false: a plain image manifest for one platform (no attestation index).
run docker buildx build --platform "$platform" --provenance=false \
  --file runner/Dockerfile --tag "$uri" --push .
echo "$uri"
