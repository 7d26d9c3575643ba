//! deploy/kubernetes is checked offline against published schemas: the Kubernetes objects with PyPI
//! `kubernetes-validate` (strict, Kubernetes 1.30 and 1.37), the Istio and Envoy Gateway resources against those
//! projects' CRD schemas vendored in deploy/kubernetes/schemas (PyPI `jsonschema`, and `cel-python` for the CRDs'
//! validation rules), and the Istio mesh
//! config against Istio's MeshConfig schema. Each validator is shown to refuse a broken copy, the files are shown
//! to fit together, the gateway file answers the Deployment's probes, and every YAML block of the Kubernetes,
//! Istio and Envoy Gateway pages is one of these files.
//! `deploy/kubernetes/validate.py` does the validating; without its packages these tests skip (fail under CI).
#![allow(clippy::unwrap_used)]

use portcullis_testkit::probe;
use portcullis_workspace_tests::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes versions whose schemas the objects must pass: the oldest and the newest claimed.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// The Kubernetes objects (kubernetes-validate); kustomization.yaml is checked by
/// `kustomization_applies_every_kubernetes_object`.
const OBJECTS: [&str; 7] = [
    "namespace.yaml",
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
    "networkpolicy.yaml",
];

/// Custom resources and the vendored CRD that defines each.
const CUSTOM_RESOURCES: [(&str, &str); 5] = [
    ("istio/authorization-policy.yaml", "schemas/istio/authorizationpolicies.security.istio.io.yaml"),
    ("istio/peer-authentication.yaml", "schemas/istio/peerauthentications.security.istio.io.yaml"),
    ("envoy-gateway/security-policy.yaml", "schemas/envoy-gateway/securitypolicies.gateway.envoyproxy.io.yaml"),
    ("envoy-gateway/reference-grant.yaml", "schemas/envoy-gateway/referencegrants.gateway.networking.k8s.io.yaml"),
    (
        "envoy-gateway/client-traffic-policy.yaml",
        "schemas/envoy-gateway/clienttrafficpolicies.gateway.envoyproxy.io.yaml",
    ),
];

/// The istiod values file and Istio's MeshConfig schema.
const MESH_CONFIG: (&str, &str) = ("istio/mesh-config.yaml", "schemas/istio-api/istio.mesh.v1alpha1.gen.json");

/// The pages whose YAML blocks must be files of deploy/kubernetes.
const PAGES: [&str; 3] =
    ["docs/deployment/kubernetes.md", "docs/deployment/istio.md", "docs/deployment/envoy-gateway.md"];

fn deploy() -> PathBuf {
    workspace_root().join("deploy/kubernetes")
}

/// Whether python3 has what validate.py needs; prints `SKIPPED:` (or fails under CI) when not.
fn validators_present() -> bool {
    probe::require(
        "kubernetes-validate, jsonschema, cel-python and PyYAML (PyPI; .ci/run installs them)",
        probe::runs("python3", &["-c", "import kubernetes_validate, jsonschema, celpy, yaml"]),
    )
}

/// What `validate.py ARGS` said on stdout, and its exit code.
fn validate(args: &[&str]) -> (i32, String) {
    let output = Command::new("python3").arg(deploy().join("validate.py")).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty(), "validate.py {args:?} wrote to stderr:\n{stderr}");
    (output.status.code().unwrap(), stdout)
}

/// Runs `validate.py ARGS`, which must accept, with one `ok FILE:` line for each of `files`.
fn accepts(args: &[&str], files: &[&str]) -> String {
    let (code, said) = validate(args);
    assert_eq!(code, 0, "validate.py {args:?} refused:\n{said}");
    for file in files {
        assert!(said.lines().any(|l| l.starts_with(&format!("ok {file}:"))), "{file} not validated:\n{said}");
    }
    assert!(!said.contains("invalid"), "{said}");
    said
}

/// Runs `validate.py ARGS`, which must refuse with exit code 1 and a line containing `why`.
fn refuses(args: &[&str], why: &str) {
    let (code, said) = validate(args);
    assert_eq!(code, 1, "validate.py {args:?} did not refuse:\n{said}");
    assert!(said.lines().any(|l| l.starts_with("invalid") || l.starts_with("inconsistent")), "{said}");
    assert!(said.contains(why), "validate.py {args:?} refused, but not for {why:?}:\n{said}");
}

/// A copy of deploy/kubernetes/`file` in `dir` with `from` replaced by `to` (which must occur in it).
fn broken(dir: &Path, file: &str, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(deploy().join(file)).unwrap();
    assert!(text.contains(from), "{file} no longer contains {from:?}: update this test");
    let path = dir.join(file.replace('/', "-"));
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path.to_string_lossy().into_owned()
}

/// deploy/kubernetes/`file` as an absolute path (validate.py names files as it was given them).
fn absolute(file: &str) -> String {
    deploy().join(file).to_string_lossy().into_owned()
}

#[test]
fn kubernetes_objects_pass_kubernetes_validate_strictly_for_each_version() {
    if !validators_present() {
        return;
    }
    let files: Vec<String> = OBJECTS.iter().map(|f| absolute(f)).collect();
    for version in KUBERNETES_VERSIONS {
        let mut args = vec!["kubernetes", version];
        args.extend(files.iter().map(String::as_str));
        let said = accepts(&args, &files.iter().map(String::as_str).collect::<Vec<_>>());
        let minor = version.rsplit_once('.').unwrap().0;
        assert_eq!(said.matches(&format!("(Kubernetes {minor} schema, strict)")).count(), OBJECTS.len(), "{said}");
    }
}

#[test]
fn kubernetes_validate_refuses_a_broken_deployment() {
    if !validators_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wrong_type = broken(dir.path(), "deployment.yaml", "replicas: 2", "replicas: \"two\"");
    refuses(&["kubernetes", KUBERNETES_VERSIONS[0], &wrong_type], "$.spec.replicas: 'two' is not of type");
    let misspelled = broken(dir.path(), "deployment.yaml", "readOnlyRootFilesystem:", "readOnlyRootFileSystem:");
    refuses(&["kubernetes", KUBERNETES_VERSIONS[1], &misspelled], "'readOnlyRootFileSystem' was unexpected");
    let no_minimum = broken(dir.path(), "hpa.yaml", "maxReplicas: 10", "maxReplica: 10");
    refuses(&["kubernetes", KUBERNETES_VERSIONS[1], &no_minimum], "maxReplicas");
}

#[test]
fn istio_and_envoy_gateway_resources_pass_their_crd_schemas() {
    if !validators_present() {
        return;
    }
    let mut rules = 0;
    for (resource, crd) in CUSTOM_RESOURCES {
        let said = accepts(&["crd", &absolute(crd), &absolute(resource)], &[&absolute(resource)]);
        let name = Path::new(crd).file_stem().unwrap().to_string_lossy().into_owned();
        assert!(said.contains(&format!("(CRD {name} ")), "{resource} not checked by {crd}:\n{said}");
        let count = said.trim_end().strip_suffix(" CEL rules)").and_then(|s| s.rsplit(' ').next()).unwrap();
        rules += count.parse::<usize>().unwrap();
    }
    // The SecurityPolicy's "one of grpc or http" and backendRefs rules among them.
    assert!(rules >= 20, "only {rules} CEL rules evaluated");
}

#[test]
fn the_crd_validator_refuses_broken_resources() {
    if !validators_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [(policy, policy_crd), (peer, peer_crd), (security, security_crd), _, _] = CUSTOM_RESOURCES;
    let permit = broken(dir.path(), policy, "action: CUSTOM", "action: PERMIT");
    refuses(&["crd", &absolute(policy_crd), &permit], "$.spec.action: 'PERMIT' is not one of");
    let stricter = broken(dir.path(), peer, "mode: STRICT", "mode: STRICTER");
    refuses(&["crd", &absolute(peer_crd), &stricter], "'STRICTER' is not one of");
    let fail_open = broken(dir.path(), security, "failOpen: false", "failOpen: \"no\"");
    refuses(&["crd", &absolute(security_crd), &fail_open], "$.spec.extAuth.failOpen: 'no' is not of type 'boolean'");
    // The CRDs' CEL rules: a wildcard label value in an Istio selector, an ext_authz backend that is no Service.
    let wildcard = broken(dir.path(), policy, "      app: api", "      app: \"api*\"");
    refuses(&["crd", &absolute(policy_crd), &wildcard], "matchLabels.app: wildcard not allowed in label value match");
    let config_map = broken(dir.path(), security, "          kind: Service", "          kind: ConfigMap");
    refuses(
        &["crd", &absolute(security_crd), &config_map],
        "$.spec.extAuth.grpc: BackendRefs only supports Service, ServiceImport, and Backend kind.",
    );
    let misspelled = broken(dir.path(), security, "    grpc:", "    grcp:");
    refuses(&["crd", &absolute(security_crd), &misspelled], "$.spec.extAuth: unknown field `grcp`");
    // A resource of another kind or version is not passed off as valid.
    refuses(&["crd", &absolute(security_crd), &absolute(policy)], "not a SecurityPolicy of");
    let old = broken(dir.path(), policy, "security.istio.io/v1\n", "security.istio.io/v1alpha9\n");
    refuses(&["crd", &absolute(policy_crd), &old], "not a AuthorizationPolicy of");
}

#[test]
fn the_istio_mesh_config_passes_the_mesh_config_schema_and_a_broken_one_does_not() {
    if !validators_present() {
        return;
    }
    let (values, schema) = MESH_CONFIG;
    let said = accepts(&["mesh-config", &absolute(schema), &absolute(values)], &[&absolute(values)]);
    assert!(said.contains("meshConfig of istiod"), "{said}");
    let dir = tempfile::tempdir().unwrap();
    let port = broken(dir.path(), values, "port: 9001", "port: \"9001\"");
    refuses(&["mesh-config", &absolute(schema), &port], "envoyExtAuthzGrpc.port: '9001' is not of type 'integer'");
    let fail_open = broken(dir.path(), values, "failOpen: false", "failopen: false");
    refuses(&["mesh-config", &absolute(schema), &fail_open], "unknown field `failopen`");
    let normalization = broken(dir.path(), values, "normalization: MERGE_SLASHES", "normalization: MERGE");
    refuses(&["mesh-config", &absolute(schema), &normalization], "'MERGE' is not one of");
}

#[test]
fn the_configmap_carries_the_gateway_file_byte_for_byte() {
    if !validators_present() {
        return;
    }
    let toml = absolute("portcullis.toml");
    accepts(&["gateway-file", &absolute("configmap.yaml"), &toml], &[&absolute("configmap.yaml")]);
    let dir = tempfile::tempdir().unwrap();
    let drifted = broken(dir.path(), "configmap.yaml", "max_connections = 2000", "max_connections = 3000");
    refuses(&["gateway-file", &drifted, &toml], "data.gateway.toml differs from");
    // The file itself is run through `portcullis check-config` with every .toml of the repository
    // (crates/portcullis-cli/tests/check_config.rs::every_configuration_in_the_repository_is_valid).
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("ext_authz_grpc = \"0.0.0.0:9001\""), "{text}");
}

#[test]
fn the_files_fit_together_as_the_docs_promise() {
    if !validators_present() {
        return;
    }
    let dir = deploy().to_string_lossy().into_owned();
    let (code, said) = validate(&["consistency", &dir]);
    assert_eq!((code, said.trim()), (0, format!("ok {dir}: every file fits the others").as_str()));

    // A copy with a readiness probe on /healthz, one replica and a mesh pointed at the wrong port is refused,
    // for each of the three.
    let copy = tempfile::tempdir().unwrap();
    let files =
        OBJECTS.iter().chain(&["portcullis.toml", MESH_CONFIG.0]).chain(CUSTOM_RESOURCES.iter().map(|(f, _)| f));
    for file in files {
        let target = copy.path().join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(deploy().join(file), target).unwrap();
    }
    let edit = |file: &str, from: &str, to: &str| {
        let path = copy.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} no longer contains {from:?}");
        std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    };
    edit("deployment.yaml", "path: /ready", "path: /healthz");
    edit("deployment.yaml", "replicas: 2", "replicas: 1");
    edit(MESH_CONFIG.0, "port: 9001", "port: 9002");
    let copy_dir = copy.path().to_string_lossy().into_owned();
    let (code, said) = validate(&["consistency", &copy_dir]);
    assert_eq!(code, 1, "{said}");
    for why in [
        "Deployment: 1 replicas, at least 2 wanted",
        "Deployment: readinessProbe is not GET /ready on the admin port",
        "mesh config: provider calls portcullis.portcullis.svc.cluster.local:9002",
    ] {
        assert!(said.contains(why), "not refused for {why:?}:\n{said}");
    }
}

/// Every YAML file of deploy/kubernetes outside schemas/.
fn yaml_files(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().unwrap() != "schemas" {
                yaml_files(&path, found);
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            found.push(path.strip_prefix(deploy()).unwrap().to_string_lossy().replace('\\', "/"));
        }
    }
}

#[test]
fn every_yaml_file_has_a_validator() {
    let mut found = Vec::new();
    yaml_files(&deploy(), &mut found);
    let validated: Vec<&str> = OBJECTS
        .iter()
        .copied()
        .chain(CUSTOM_RESOURCES.iter().map(|(file, _)| *file))
        .chain([MESH_CONFIG.0, "kustomization.yaml"])
        .collect();
    for file in &found {
        assert!(validated.contains(&file.as_str()), "deploy/kubernetes/{file} is validated by no test");
    }
    for file in validated {
        assert!(found.iter().any(|f| f == file), "deploy/kubernetes/{file} is gone: update this test");
    }
}

#[test]
fn kustomization_applies_every_kubernetes_object() {
    let text = std::fs::read_to_string(deploy().join("kustomization.yaml")).unwrap();
    let mut listed: Vec<&str> = text
        .lines()
        .skip_while(|line| line.trim() != "resources:")
        .skip(1)
        .map_while(|line| line.trim().strip_prefix("- "))
        .collect();
    listed.sort_unstable();
    let mut objects = OBJECTS.to_vec();
    objects.sort_unstable();
    assert_eq!(listed, objects, "kustomization.yaml's resources are not the Kubernetes objects");
}

#[test]
fn every_yaml_block_of_the_pages_is_a_validated_file_or_says_it_is_not() {
    let mut shown = 0;
    for page in PAGES {
        let text = std::fs::read_to_string(workspace_root().join(page)).unwrap();
        for found in portcullis_testkit::markdown::fenced_blocks(&text, &["yaml", "yml"]) {
            let (line, block, marker) = (found.line, found.text, found.marker.unwrap_or_default());
            if let Some(file) = marker.strip_prefix("file: deploy/kubernetes/") {
                let path = deploy().join(file);
                let content = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{page}:{line}: deploy/kubernetes/{file}: {e}"));
                assert_eq!(block, content, "{page}:{line}: the block is not deploy/kubernetes/{file}");
                let mut found = Vec::new();
                yaml_files(&deploy(), &mut found);
                assert!(found.iter().any(|f| f == file), "{page}:{line}: {file} is not among the validated files");
                shown += 1;
            } else {
                let reason = marker.strip_prefix("shown, not validated").map(|r| r.trim_start_matches(',').trim());
                assert!(
                    reason.is_some_and(|r| !r.is_empty()),
                    "{page}:{line}: a YAML block is marked neither `<!-- file: deploy/kubernetes/… -->` nor \
                     `<!-- shown, not validated, REASON -->`"
                );
            }
        }
    }
    assert!(shown >= 8, "only {shown} validated files shown in the pages");
}

/// `portcullis serve` of the ConfigMap's gateway file, on loopback ports in place of the pod's addresses, with
/// `issuer` in place of the file's. Returns the admin listener's base URL.
async fn serve_gateway_file(issuer: Option<&str>) -> String {
    let mut text = std::fs::read_to_string(deploy().join("portcullis.toml")).unwrap();
    if let Some(issuer) = issuer {
        let file_issuer = "issuer = \"https://your-tenant.auth0.com/\"";
        assert!(text.contains(file_issuer), "portcullis.toml no longer names its issuer so: update this test");
        text = text.replacen(file_issuer, &format!("issuer = \"{issuer}\""), 1);
    }
    let gateway = portcullis_gateway::Gateway::new(portcullis_gateway::Config::from_toml(&text).unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    tokio::spawn(portcullis_gateway::serve(gateway, listener, Some(admin), std::future::pending()));
    admin_url
}

/// The probes of deployment.yaml against the gateway file it runs: `/healthz` answers while the process serves;
/// `/ready` answers 503 while the issuer's keys cannot be had (no check should land on that replica), and 200
/// once they are loaded.
#[tokio::test]
async fn the_gateway_file_answers_the_deployments_probes() {
    let http = reqwest::Client::new();
    let status = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };

    // The file's own issuer is out of reach here: alive, not ready.
    let admin = serve_gateway_file(None).await;
    assert_eq!(status(format!("{admin}/healthz")).await, 200);
    assert_eq!(status(format!("{admin}/ready")).await, 503);

    // With a reachable issuer, ready once its keys are loaded (polled, with a deadline).
    let issuer = portcullis_testkit::issuers::demo().await;
    let admin = serve_gateway_file(Some(issuer.issuer())).await;
    assert_eq!(status(format!("{admin}/healthz")).await, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ready = status(format!("{admin}/ready")).await;
        if ready == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "/ready still answers {ready} after 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
