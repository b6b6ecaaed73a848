#!/usr/bin/env python3
"""Validates the Kubernetes manifests offline, strictly.

Renders deploy/k8s and deploy/k8s/overlays/cert-manager with kustomize (the kustomize Go
library, through the PyPI package pykustomize), then validates every resource with
kubernetes-validate against the schemas of the oldest and the newest Kubernetes version
supported (strict: an unknown field fails). cert-manager's resources are custom resources
that no Kubernetes schema knows: they are held to the schema below, the subset of
cert-manager.io/v1 that the manifests use, written from cert-manager's API reference and
as strict (no other field passes). Run by .ci/run with the tools .ci/setup installs.
"""

import asyncio
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from pykustomize import BuildOptions, LoadRestrictions, build

# 1.27: the first with gRPC probes generally available; 1.37: the newest that
# kubernetes-validate ships schemas for.
VERSIONS = ["1.27.0", "1.37.0"]
KUSTOMIZATIONS = ["deploy/k8s", "deploy/k8s/overlays/cert-manager"]

STRINGS = {"type": "array", "items": {"type": "string"}}
ISSUER_REF = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": {"type": "string"}},
}
USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime",
    "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
]
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": {"type": "object"}},
}
CERT_MANAGER = {
    "Certificate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "cert-manager.io/v1"},
            "kind": {"const": "Certificate"},
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["secretName", "issuerRef"],
                "properties": {
                    "secretName": {"type": "string"},
                    "issuerRef": ISSUER_REF,
                    "commonName": {"type": "string"},
                    "isCA": {"type": "boolean"},
                    "duration": {"type": "string", "pattern": "^([0-9]+(h|m|s))+$"},
                    "renewBefore": {"type": "string", "pattern": "^([0-9]+(h|m|s))+$"},
                    "dnsNames": STRINGS,
                    "uris": STRINGS,
                    "ipAddresses": STRINGS,
                    "usages": {"type": "array", "items": {"enum": USAGES}},
                    "privateKey": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                            "size": {"type": "integer"},
                            "encoding": {"enum": ["PKCS1", "PKCS8"]},
                            "rotationPolicy": {"enum": ["Never", "Always"]},
                        },
                    },
                },
            },
        },
    },
    "Issuer": {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "cert-manager.io/v1"},
            "kind": {"const": "Issuer"},
            "metadata": METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    "selfSigned": {"type": "object", "additionalProperties": False, "properties": {"crlDistributionPoints": STRINGS}},
                    "ca": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["secretName"],
                        "properties": {"secretName": {"type": "string"}, "crlDistributionPoints": STRINGS, "ocspServers": STRINGS},
                    },
                },
            },
        },
    },
}


def render(path: str) -> list[dict]:
    options = BuildOptions(load_restrictions=LoadRestrictions.NONE)
    result = asyncio.run(build(path, options))
    return [doc for doc in yaml.safe_load_all(result.yaml) if doc]


def main() -> int:
    failures = 0
    core = custom = 0
    for path in KUSTOMIZATIONS:
        resources = render(path)
        for resource in resources:
            name = f"{path}: {resource['kind']}/{resource['metadata']['name']}"
            if resource["apiVersion"].startswith("cert-manager.io/"):
                schema = CERT_MANAGER.get(resource["kind"])
                try:
                    if schema is None:
                        raise jsonschema.ValidationError(f"no schema for {resource['kind']}")
                    jsonschema.validate(resource, schema)
                    custom += 1
                except jsonschema.ValidationError as error:
                    print(f"INVALID {name} (cert-manager.io/v1 subset): {error.message}")
                    failures += 1
                continue
            valid = True
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(resource, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    where = "/".join(str(p) for p in error.absolute_path)
                    print(f"INVALID {name} (Kubernetes {version}) at {where}: {error.message}")
                    valid = False
                except kubernetes_validate.SchemaNotFoundError as error:
                    print(f"INVALID {name} (Kubernetes {version}): {error}")
                    valid = False
            failures += 0 if valid else 1
            core += 1 if valid else 0
        print(f"{path}: {len(resources)} resources rendered")
    print(
        f"k8s manifests: {core} resources valid against Kubernetes {' and '.join(VERSIONS)} (strict), "
        f"{custom} cert-manager resources against the cert-manager.io/v1 subset; {failures} failures"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
