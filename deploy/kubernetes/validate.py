#!/usr/bin/env python3
"""Validates the files of deploy/kubernetes offline, against published schemas (tests/kubernetes.rs runs it).

  validate.py kubernetes VERSION FILE...   Kubernetes objects, with kubernetes-validate's schemas of that
                                           Kubernetes version, unknown fields refused (--strict).
  validate.py crd CRD FILE...              custom resources, with the openAPIV3Schema of the CRD's version that
                                           each resource names in apiVersion, and its CEL rules.
  validate.py mesh-config SCHEMA FILE      the `meshConfig` of an istiod values file, with Istio's MeshConfig
                                           OpenAPI schema.
  validate.py gateway-file CONFIGMAP TOML  the ConfigMap's gateway.toml is the TOML file byte for byte.
  validate.py consistency DIR              the files of DIR (deploy/kubernetes) fit together and hold what
                                           docs/deployment/kubernetes.md promises: ports, probes, replicas,
                                           security context, selectors, the meshes' references to the Service.

With `crd` and `mesh-config`, an object whose schema names its fields and does not declare
`additionalProperties` or `x-kubernetes-preserve-unknown-fields` also refuses fields the schema does not name, as
the API server's strict field validation does. With `crd`, the CRD's CEL rules (`x-kubernetes-validations`) are
evaluated with cel-python on the resource with the schema's defaults filled in, as the API server does.

Each document gets one line, `ok FILE: KIND NAME (what checked it)` or `invalid FILE: KIND NAME: why`. Exit
status: 0 when every document is valid, 1 when one is not, 2 when a required package is missing (the line
`missing: …` names it).
"""

import sys

try:
    import celpy  # noqa: F401 - used by rule_problems; missing is reported here, before any validation
    import jsonschema
    import yaml
except ImportError as error:
    print(f"missing: {error.name} (pip install jsonschema pyyaml cel-python)")
    sys.exit(2)


def documents(path):
    """The YAML documents of a file, empty ones left out."""
    with open(path, encoding="utf-8") as file:
        # libyaml's loader when PyYAML has it: the Envoy Gateway CRDs are large.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return [doc for doc in yaml.load_all(file, Loader=loader) if doc is not None]


def describe(doc):
    metadata = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')} {metadata.get('name', '?')}"


def resolve(schema, root):
    """Follows local `$ref`s (`#/a/b`) from the root document."""
    while isinstance(schema, dict) and "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def field_schemas(schema, root):
    """Every schema that describes an object's fields: the schema and its oneOf/anyOf/allOf/not branches."""
    schema = resolve(schema, root)
    if not isinstance(schema, dict):
        return []
    found = [schema]
    for key in ("oneOf", "anyOf", "allOf"):
        for branch in schema.get(key, []):
            found.extend(field_schemas(branch, root))
    if "not" in schema:
        found.extend(field_schemas(schema["not"], root))
    return found


def field_problems(value, schema, root, path="$"):
    """What a document-wide validation misses: fields the schema does not name, where the schema names its fields
    and allows no others; and fields named only in a oneOf/anyOf branch, checked against that branch's schema
    (a branch that fails no longer counts in a `oneOf` whose other branch is `not anyOf` of them all)."""
    schemas = field_schemas(schema, root)
    top = resolve(schema, root) if isinstance(schema, dict) else {}
    problems = []
    if isinstance(value, dict):
        open_ = any(
            "additionalProperties" in s or s.get("x-kubernetes-preserve-unknown-fields") for s in schemas
        ) or not any("properties" in s for s in schemas)
        for key, item in value.items():
            known = [s["properties"][key] for s in schemas if key in s.get("properties", {})]
            if not known:
                if not open_:
                    problems.append(f"{path}: unknown field `{key}`")
                continue
            if key not in top.get("properties", {}):
                problems.extend(violations(item, known[0], root, f"{path}.{key}"))
            problems.extend(field_problems(item, known[0], root, f"{path}.{key}"))
    elif isinstance(value, list):
        items = [s["items"] for s in schemas if isinstance(s.get("items"), dict)]
        if items:
            for index, item in enumerate(value):
                problems.extend(field_problems(item, items[0], root, f"{path}[{index}]"))
    return problems


def violations(value, schema, root, path="$"):
    """Every violation of `schema` by `value` (JSON Schema draft 4, the dialect of OpenAPI 3.0), `$ref`s resolved
    in `root`."""
    scoped = dict(resolve(schema, root))
    if "components" in root:
        scoped["components"] = root["components"]
    validator = jsonschema.Draft4Validator(scoped)
    return [
        f"{'.'.join([path] + [str(p) for p in error.absolute_path])}: {error.message}"
        for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    ]


def check(schema, root, doc, implicit=()):
    """Every violation of `schema` by `doc`, then the field problems (the top-level `implicit` fields are not
    looked at); empty when valid."""
    explicit = {key: value for key, value in doc.items() if key not in implicit}
    return violations(doc, schema, root) + field_problems(explicit, schema, root)


def with_defaults(value, schema):
    """`value` with the schema's defaults filled in where fields are absent, as the API server does before it
    evaluates validation rules."""
    if isinstance(value, dict) and isinstance(schema, dict):
        properties = schema.get("properties", {})
        filled = {key: with_defaults(item, properties.get(key, {})) for key, item in value.items()}
        for key, field in properties.items():
            if key not in filled and "default" in field:
                filled[key] = with_defaults(field["default"], field)
        return filled
    if isinstance(value, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        return [with_defaults(item, schema["items"]) for item in value]
    return value


def rule_problems(value, schema, path="$"):
    """The CRD's CEL rules (`x-kubernetes-validations`) on every node of `value` that is present, evaluated with
    cel-python; rules about updates (`oldSelf`) do not apply to a new object. Returns (problems, rules evaluated);
    a rule cel-python cannot evaluate is a problem too, so that nothing passes unchecked."""
    import celpy

    problems, evaluated = [], 0
    if not isinstance(schema, dict):
        return problems, evaluated
    environment = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        try:
            program = environment.program(environment.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except Exception as error:  # noqa: BLE001 - any failure to evaluate is reported, never passed
            problems.append(f"{path}: rule {rule['rule']!r} could not be evaluated: {type(error).__name__}")
            continue
        evaluated += 1
        if isinstance(result, Exception) or not bool(result):
            problems.append(f"{path}: {rule.get('message') or rule['rule']}")
    children = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        children = [(item, properties[key], f"{path}.{key}") for key, item in value.items() if key in properties]
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            children += [(item, extra, f"{path}.{key}") for key, item in value.items() if key not in properties]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        children = [(item, schema["items"], f"{path}[{index}]") for index, item in enumerate(value)]
    for item, field, where in children:
        more, count = rule_problems(item, field, where)
        problems += more
        evaluated += count
    return problems, evaluated


def report(path, doc, problems, checked_by):
    if problems:
        print(f"invalid {path}: {describe(doc)}: " + "; ".join(problems))
        return False
    print(f"ok {path}: {describe(doc)} ({checked_by})")
    return True


def kubernetes(version, paths):
    try:
        import kubernetes_validate
    except ImportError:
        print("missing: kubernetes_validate (pip install kubernetes-validate)")
        return 2
    valid = True
    for path in paths:
        for doc in documents(path):
            try:
                used = kubernetes_validate.validate(doc, version, strict=True)
                valid &= report(path, doc, [], f"Kubernetes {used} schema, strict")
            except kubernetes_validate.ValidationError as error:
                where = ".".join(str(p) for p in error.absolute_path)
                valid &= report(path, doc, [f"$.{where}: {error.message}"], "")
            except kubernetes_validate.SchemaNotFoundError as error:
                valid &= report(path, doc, [error.message], "")
    return 0 if valid else 1


def crd(crd_path, paths):
    (definition,) = documents(crd_path)
    group = definition["spec"]["group"]
    kind = definition["spec"]["names"]["kind"]
    versions = {v["name"]: v for v in definition["spec"]["versions"] if v.get("served")}
    valid = True
    for path in paths:
        for doc in documents(path):
            api_group, _, api_version = str(doc.get("apiVersion", "")).rpartition("/")
            if api_group != group or doc.get("kind") != kind or api_version not in versions:
                served = ", ".join(f"{group}/{v}" for v in versions)
                valid &= report(path, doc, [f"not a {kind} of {served} ({doc.get('apiVersion')})"], "")
                continue
            schema = versions[api_version]["schema"]["openAPIV3Schema"]
            # Every object has these; the API server checks them, not the CRD's schema.
            problems = check(schema, schema, doc, implicit=("apiVersion", "kind", "metadata"))
            spec = {key: value for key, value in doc.items() if key not in ("apiVersion", "kind", "metadata")}
            more, rules = rule_problems(with_defaults(spec, schema), schema)
            checked_by = f"CRD {definition['metadata']['name']} {api_version}, {rules} CEL rules"
            valid &= report(path, doc, problems + more, checked_by)
    return 0 if valid else 1


def mesh_config(schema_path, path):
    import json

    with open(schema_path, encoding="utf-8") as file:
        root = json.load(file)
    schema = {"$ref": "#/components/schemas/istio.mesh.v1alpha1.MeshConfig"}
    valid = True
    for doc in documents(path):
        if "meshConfig" not in doc:
            valid &= report(path, doc, ["no meshConfig"], "")
            continue
        problems = check(schema, root, doc["meshConfig"])
        valid &= report(path, {"kind": "meshConfig", "metadata": {"name": "of istiod"}}, problems, f"{root['info']['title']} {root['info']['version']}")
    return 0 if valid else 1


def gateway_file(configmap_path, toml_path):
    (configmap,) = documents(configmap_path)
    with open(toml_path, encoding="utf-8") as file:
        expected = file.read()
    carried = (configmap.get("data") or {}).get("gateway.toml")
    problems = [] if carried == expected else [f"data.gateway.toml differs from {toml_path}"]
    return 0 if report(configmap_path, configmap, problems, f"gateway.toml is {toml_path}") else 1


def port_of(address):
    return int(str(address).rsplit(":", 1)[1])


def consistency(directory):
    import os
    import tomllib

    def load(name):
        (doc,) = documents(os.path.join(directory, name))
        return doc

    with open(os.path.join(directory, "portcullis.toml"), "rb") as file:
        gateway = tomllib.load(file)
    deployment, service, configmap = load("deployment.yaml"), load("service.yaml"), load("configmap.yaml")
    hpa, pdb, policy = load("hpa.yaml"), load("pdb.yaml"), load("networkpolicy.yaml")
    mesh, security = load("istio/mesh-config.yaml"), load("envoy-gateway/security-policy.yaml")
    grant = load("envoy-gateway/reference-grant.yaml")
    namespace = deployment["metadata"]["namespace"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    labels = spec["template"]["metadata"]["labels"]
    problems = []

    def expect(condition, what):
        if not condition:
            problems.append(what)

    expect(spec["replicas"] >= 2, f"Deployment: {spec['replicas']} replicas, at least 2 wanted")
    expect(spec["selector"]["matchLabels"].items() <= labels.items(), "Deployment: selector misses the pod labels")
    wanted = {"http": "listen", "grpc-ext-authz": "ext_authz_grpc", "admin": "admin_listen"}
    for name, key in wanted.items():
        expect(key in gateway and ports.get(name) == port_of(gateway[key]),
               f"Deployment: port {name} ({ports.get(name)}) is not the gateway file's {key} ({gateway.get(key)})")
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        expect(get.get("path") == path and get.get("port") == "admin",
               f"Deployment: {probe} is not GET {path} on the admin port ({get})")
    context = container.get("securityContext", {})
    expect(pod.get("securityContext", {}).get("runAsNonRoot") is True, "Deployment: runAsNonRoot is not true")
    expect(context.get("readOnlyRootFilesystem") is True, "Deployment: the root filesystem is writable")
    expect(context.get("allowPrivilegeEscalation") is False, "Deployment: privilege escalation is allowed")
    expect(context.get("capabilities", {}).get("drop") == ["ALL"], "Deployment: capabilities are not all dropped")
    requests = container.get("resources", {}).get("requests", {})
    expect("cpu" in requests and "memory" in requests, "Deployment: no CPU and memory requests")
    mount = {m["name"]: m for m in container["volumeMounts"]}
    volume = {v["name"]: v for v in pod["volumes"]}
    config_path = container["args"][container["args"].index("--config") + 1]
    mounted = [
        f"{m['mountPath']}/{item['path']}"
        for name, m in mount.items()
        if volume.get(name, {}).get("configMap", {}).get("name") == configmap["metadata"]["name"]
        for item in volume[name]["configMap"].get("items", [])
        if item["key"] in configmap["data"]
    ]
    expect(config_path in mounted, f"Deployment: --config {config_path} is not the ConfigMap's file ({mounted})")
    expect(all(m.get("readOnly") for m in mount.values()), "Deployment: a volume is mounted writable")

    expect(service["spec"]["selector"].items() <= labels.items(), "Service: selector misses the pod labels")
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for p in service_ports.values():
        expect(p["targetPort"] in ports, f"Service: targetPort {p['targetPort']} is no container port")
    grpc = service_ports.get("grpc-ext-authz", {})
    expect(grpc.get("targetPort") == "grpc-ext-authz", "Service: no grpc-ext-authz port")
    expect("admin" not in [p["targetPort"] for p in service_ports.values()], "Service: exposes the admin port")

    target = hpa["spec"]["scaleTargetRef"]
    expect(target["kind"] == "Deployment" and target["name"] == deployment["metadata"]["name"],
           "HorizontalPodAutoscaler: does not scale the Deployment")
    expect(hpa["spec"]["minReplicas"] >= 2, "HorizontalPodAutoscaler: minReplicas below 2")
    cpu = [m for m in hpa["spec"]["metrics"] if m.get("resource", {}).get("name") == "cpu"]
    expect(len(cpu) == 1, "HorizontalPodAutoscaler: not scaled on CPU")
    expect(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "PodDisruptionBudget: wrong selector")

    expect(policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), "NetworkPolicy: wrong selector")
    expect(set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}, "NetworkPolicy: not both directions")
    for rule in policy["spec"]["ingress"]:
        named = [p["port"] for p in rule.get("ports", [])]
        expect(named and all(p in ports for p in named), f"NetworkPolicy: ingress rule on ports {named}")
        expect(rule.get("from"), "NetworkPolicy: an ingress rule admits every peer")
        if "grpc-ext-authz" in named:
            expect("admin" not in named, "NetworkPolicy: the meshes' rule opens the admin port")
    egress_ports = sorted({p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])})
    expect(egress_ports == [53, 443, 15012], f"NetworkPolicy: egress to ports {egress_ports}, wanted DNS, 443, istiod")

    host = f"{service['metadata']['name']}.{namespace}.svc.cluster.local"
    providers = [p["envoyExtAuthzGrpc"] for p in mesh["meshConfig"]["extensionProviders"] if "envoyExtAuthzGrpc" in p]
    expect(len(providers) == 1, "mesh config: not one envoyExtAuthzGrpc provider")
    for provider in providers:
        expect(provider.get("service") == host and provider.get("port") == grpc.get("port"),
               f"mesh config: provider calls {provider.get('service')}:{provider.get('port')}, "
               f"not {host}:{grpc.get('port')}")
        expect(provider.get("failOpen") is False, "mesh config: failOpen is not false")
    refs = security["spec"]["extAuth"]["grpc"]["backendRefs"]
    expect([(r["name"], r.get("namespace"), r["port"]) for r in refs] ==
           [(service["metadata"]["name"], namespace, grpc.get("port"))],
           f"SecurityPolicy: backendRefs {refs} are not the Service's gRPC port")
    expect(security["spec"]["extAuth"].get("failOpen") is False, "SecurityPolicy: failOpen is not false")
    expect(grant["metadata"]["namespace"] == namespace
           and any(f["kind"] == "SecurityPolicy" and f["namespace"] == security["metadata"]["namespace"]
                   for f in grant["spec"]["from"])
           and any(t["kind"] == "Service" and t.get("name") == service["metadata"]["name"]
                   for t in grant["spec"]["to"]),
           "ReferenceGrant: does not let the SecurityPolicy name the Service")

    for problem in problems:
        print(f"inconsistent {directory}: {problem}")
    if not problems:
        print(f"ok {directory}: every file fits the others")
    return 1 if problems else 0


def main(args):
    commands = {
        "kubernetes": (lambda a: kubernetes(a[0], a[1:]), 2),
        "crd": (lambda a: crd(a[0], a[1:]), 2),
        "mesh-config": (lambda a: mesh_config(a[0], a[1]), 2),
        "gateway-file": (lambda a: gateway_file(a[0], a[1]), 2),
        "consistency": (lambda a: consistency(a[0]), 1),
    }
    if not args or args[0] not in commands or len(args) - 1 < commands[args[0]][1]:
        print(__doc__, file=sys.stderr)
        return 64
    run, _ = commands[args[0]]
    return run(args[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
