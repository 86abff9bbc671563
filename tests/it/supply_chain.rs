//! Supply chain: SLSA provenance and SBOMs attached to images (as BuildKit attaches them),
//! pushed with the image and read back by skopeo, pulled back; OCI referrers; annotations;
//! SBOMs of a real Debian image and of a corrupt package database.

use std::path::Path;

use crate::registry_support::{TestRegistry, busybox_env, rbuild, skopeo};
use crate::support::{TestEnv, assert_failure, assert_success, flat, stderr, stdout};

const DPKG_STATUS: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
Source: glibc\nVersion: 2.36-9+deb12u4\n\nPackage: tzdata\nStatus: install ok installed\n\
Architecture: all\nVersion: 2024a-0+deb12u1\n\nPackage: removed\nStatus: deinstall ok \
config-files\nArchitecture: amd64\nVersion: 1.0\n";

/// rbuild with its defaults: provenance on.
pub(crate) fn defaults(mut command: std::process::Command) -> std::process::Command {
    command.env_remove(crate::support::NO_DEFAULT_ATTESTATIONS);
    command
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert_success(out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| panic!("{err}: {}", stdout(out)))
}

fn skopeo_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&skopeo(args).stdout).unwrap()
}

#[test]
fn provenance_and_sbom_are_attached_pushed_and_read_back() {
    require_privileges!();
    crate::support::require_tool("skopeo");
    let registry = TestRegistry::start();
    let env = busybox_env();
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nARG NOTE\nRUN echo $NOTE > /note\nCOPY status /var/lib/dpkg/status\n\
                 COPY METADATA /usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA\n",
            ),
            ("status", DPKG_STATUS),
            (
                "METADATA",
                "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache-2.0\n",
            ),
        ],
    );
    let target = registry.reference("supply/app:1");
    let out = defaults(crate::registry_support::command(&env))
        .args([
            "build",
            "-q",
            "--sbom",
            "--provenance=max",
            "--build-arg",
            "NOTE=hello",
            "--build-arg",
            "SOURCE_DATE_EPOCH=1700000000",
            "--annotation",
            "org.example.team=core",
            "--annotation",
            "index:org.example.scope=all",
            "-t",
            &target,
            "--push",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_success(&out);

    // What rbuild says the image is made from.
    let statement = json(&rbuild(&env, &["inspect", "--provenance", &target]));
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let definition = &statement["predicate"]["buildDefinition"];
    let request = &definition["externalParameters"]["request"];
    assert_eq!(request["args"]["build-arg:NOTE"], "hello");
    assert_eq!(
        definition["externalParameters"]["configSource"]["path"],
        "Dockerfile"
    );
    assert!(
        definition["internalParameters"]["dockerfile"]
            .as_str()
            .unwrap()
            .contains("ARG NOTE")
    );
    let materials: Vec<&str> = definition["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        materials,
        [
            "context",
            "pkg:docker/busybox@latest?platform=linux%2Famd64"
        ]
    );
    assert!(statement["predicate"]["runDetails"]["metadata"]["startedOn"].is_string());

    let sbom = json(&rbuild(&env, &["inspect", "--sbom", &target]));
    assert_eq!(sbom["predicateType"], "https://spdx.dev/Document");
    let purls: Vec<&str> = sbom["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str())
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian&upstream=glibc",
            "pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all&distro=debian",
            "pkg:pypi/requests@2.31.0",
        ]
    );

    // The registry's view: an index with the image and its attestation manifest.
    let reference = format!("docker://{target}");
    let index = skopeo_json(&["inspect", "--tls-verify=false", "--raw", &reference]);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["annotations"]["org.example.scope"], "all");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index:#}");
    assert_eq!(entries[0]["platform"]["architecture"], "amd64");
    let image_digest = entries[0]["digest"].as_str().unwrap();
    let attestation = &entries[1];
    assert_eq!(attestation["platform"]["os"], "unknown");
    let annotations = &attestation["annotations"];
    assert_eq!(
        annotations["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(annotations["vnd.docker.reference.digest"], image_digest);

    let repository = format!("docker://{}", registry.reference("supply/app"));
    let manifest = skopeo_json(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("{repository}@{image_digest}"),
    ]);
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.example.team"], "core");
    assert_eq!(
        annotations["org.opencontainers.image.base.name"],
        "busybox:latest"
    );
    assert!(
        annotations["org.opencontainers.image.base.digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(annotations["org.opencontainers.image.created"].is_string());

    // The statements in the registry name the image as the registry has it (its layers
    // compressed, so another digest than in the store).
    let layout = env.path("pulled");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &reference,
        &format!("oci:{}", layout.display()),
    ]);
    let attestation_manifest: serde_json::Value =
        read_blob(&layout, attestation["digest"].as_str().unwrap());
    let layers = attestation_manifest["layers"].as_array().unwrap();
    let types: Vec<&str> = layers
        .iter()
        .map(|l| {
            l["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        types,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );
    for layer in layers {
        assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
        let statement: serde_json::Value = read_blob(&layout, layer["digest"].as_str().unwrap());
        let subject = format!(
            "sha256:{}",
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap()
        );
        assert_eq!(subject, image_digest);
    }

    // Another machine pulls the image with its attestations and repeats the build.
    let other = busybox_env();
    assert_success(&rbuild(&other, &["pull", &target]));
    let pulled = json(&rbuild(&other, &["inspect", "--provenance", &target]));
    assert_eq!(
        pulled["subject"][0]["digest"]["sha256"],
        image_digest.trim_start_matches("sha256:")
    );
    // The SBOM's image is the pushed one too.
    let pulled_sbom = json(&rbuild(&other, &["inspect", "--sbom", &target]));
    assert_eq!(
        pulled_sbom["predicate"]["packages"][0]["versionInfo"],
        image_digest
    );
    let out = rbuild(
        &other,
        &[
            "verify-build",
            &target,
            ctx.to_str().unwrap(),
            "--build-arg",
            "NOTE=hello",
        ],
    );
    assert_success(&out);
    assert!(
        stdout(&out).starts_with(&format!(
            "reproduced: {target} (linux/amd64) has config sha256:"
        )),
        "{}",
        stdout(&out)
    );
    // Pulled by verify-build itself when the store lacks it.
    let third = busybox_env();
    let out = rbuild(&third, &["verify-build", &target, ctx.to_str().unwrap()]);
    assert_success(&out);
    assert!(stdout(&out).starts_with("reproduced: "), "{}", stdout(&out));

    // `pull --platform all` keeps the attestations: the registry's index, digest for digest.
    let whole = TestEnv::new();
    let out = rbuild(&whole, &["pull", "-q", "--platform", "all", &target]);
    assert_success(&out);
    let registry_index = crate::support::digest(
        &skopeo(&["inspect", "--tls-verify=false", "--raw", &reference]).stdout,
    );
    assert_eq!(stdout(&out).trim(), registry_index);
    json(&rbuild(&whole, &["inspect", "--provenance", &target]));
}

fn read_blob(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The default provenance (`mode=min`) records inputs only: two builds of the same inputs
/// are the same index, bit for bit; off, the image is a plain manifest.
#[test]
fn the_default_provenance_keeps_rebuilds_identical_and_can_be_turned_off() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")],
    );
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "-q", "-t", "app"];
        args.extend(extra);
        args.push(ctx.to_str().unwrap());
        let out = defaults(env.command()).args(&args).output().unwrap();
        assert_success(&out);
        let raw = env.rbuild(&["inspect", "--manifest", "app"]);
        (stdout(&out), json(&raw))
    };
    let metadata = env.path("metadata.json");
    let (first, _) = build(&["--metadata-file", metadata.to_str().unwrap()]);
    // As buildx writes it: the predicate in the metadata file.
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(
        written["buildx.build.provenance"]["buildDefinition"]["buildType"],
        "urn:rbuild:build-type:dockerfile:v1"
    );
    let provenance = json(&env.rbuild(&["inspect", "--provenance", "app"]));
    let definition = &provenance["predicate"]["buildDefinition"];
    assert!(definition["internalParameters"]["dockerfile"].is_null());
    assert!(provenance["predicate"]["runDetails"]["metadata"]["startedOn"].is_null());
    let index_digest = |name: &str| {
        let out = env.rbuild(&["images", "--format", "json"]);
        assert_success(&out);
        stdout(&out)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|image| image["Repository"] == name)
            .map(|image| image["Digest"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let first_index = index_digest("app");
    let (again, _) = build(&[]);
    assert_eq!(first, again, "a rebuild from the cache is the same image");
    assert_eq!(
        index_digest("app"),
        first_index,
        "and the same index, provenance included"
    );

    // An image with no layer of its own (its time recorded for it): the same after a prune,
    // while its index is named.
    let labels = env.context("labels", &[("Dockerfile", "FROM scratch\nLABEL a=b\n")]);
    let labelled = || {
        let out = defaults(env.command())
            .args(["build", "-q", "-t", "labelled"])
            .arg(&labels)
            .output()
            .unwrap();
        assert_success(&out);
        index_digest("labelled")
    };
    let before = labelled();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_success(&env.rbuild(&["prune"]));
    assert_eq!(labelled(), before);

    let out = env.rbuild(&["inspect", "--sbom", "app"]);
    assert_failure(&out);
    assert!(
        flat(&stderr(&out)).contains("image `app` has no SBOM attached"),
        "{}",
        stderr(&out)
    );

    build(&["--provenance=false"]);
    let out = env.rbuild(&["inspect", "--provenance", "app"]);
    assert_failure(&out);
    assert!(flat(&stderr(&out)).contains("image `app` has no provenance attached"));
    let out = env
        .command()
        .env(crate::support::NO_DEFAULT_ATTESTATIONS, "1")
        .args(["build", "-q", "-t", "plain", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    assert_failure(&env.rbuild(&["inspect", "--provenance", "plain"]));
}

/// Where `scripts/test.sh` puts a debootstrap minbase of this machine's Debian release.
const DEBIAN_MINBASE: &str = "/var/cache/rbuild-tests/debian-minbase.tar";

/// The SBOM of a real Debian image lists what dpkg says is installed, and a package a
/// later layer removes is gone from it.
#[test]
fn the_sbom_of_a_debian_image_lists_its_dpkg_packages() {
    require_privileges!();
    let tar = Path::new(DEBIAN_MINBASE);
    if !tar.exists() {
        if std::env::var_os("RBUILD_PRIVILEGED_TESTS").is_some_and(|v| v == "1") {
            panic!(
                "RBUILD_PRIVILEGED_TESTS=1 but {DEBIAN_MINBASE} is missing (scripts/test.sh makes it with debootstrap)"
            );
        }
        eprintln!("skipped: needs {DEBIAN_MINBASE} (scripts/test.sh makes it with debootstrap)");
        return;
    }
    let env = TestEnv::new();
    assert_success(&env.rbuild(&["import", DEBIAN_MINBASE, "debian:minbase"]));
    // What dpkg itself says is installed in that root.
    let dpkg_dir = env.path("dpkg");
    std::fs::create_dir(&dpkg_dir).unwrap();
    let extracted = std::process::Command::new("tar")
        .args(["-xf", DEBIAN_MINBASE, "-C"])
        .arg(&dpkg_dir)
        .arg("./var/lib/dpkg")
        .status()
        .unwrap();
    assert!(extracted.success());
    let query = std::process::Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            dpkg_dir.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${db:Status-Abbrev} ${Package}\n"])
        .output()
        .unwrap();
    assert_success(&query);
    let mut installed: Vec<String> = stdout(&query)
        .lines()
        .filter_map(|line| line.strip_prefix("ii  ").map(str::to_owned))
        .collect();
    installed.sort();
    assert!(installed.len() > 50, "{installed:?}");
    assert!(installed.contains(&"libsemanage-common".to_owned()));

    // `rbuild sbom` scans the imported image itself: every installed package.
    let out = env.rbuild(&["sbom", "--format", "cyclonedx", "debian:minbase"]);
    let bom = json(&out);
    let mut scanned: Vec<String> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    scanned.sort();
    assert_eq!(scanned, installed);
    assert!(
        stderr(&out).contains(&format!(
            "{} packages ({} deb)",
            installed.len(),
            installed.len()
        )),
        "{}",
        stderr(&out)
    );

    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM debian:minbase\nRUN dpkg --remove --force-depends libsemanage-common\n",
        )],
    );
    let out = defaults(env.command())
        .args(["build", "-q", "--sbom", "-t", "deb", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&out);
    let sbom = json(&env.rbuild(&["inspect", "--sbom", "deb"]));
    let packages = sbom["predicate"]["packages"].as_array().unwrap();
    let mut listed: Vec<String> = packages
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|purl| purl.starts_with("pkg:deb/debian/"))
        })
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    installed.retain(|name| name != "libsemanage-common");
    assert_eq!(listed, installed);
    let base_files = packages.iter().find(|p| p["name"] == "base-files").unwrap();
    let purl = base_files["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap();
    assert!(purl.contains("?arch=amd64&distro=debian-"), "{purl}");
    // Licenses from the packages' machine-readable copyright files, as SPDX.
    let licensed = packages.iter().find(|p| p["name"] == "libzstd1").unwrap();
    assert!(
        licensed["licenseDeclared"]
            .as_str()
            .unwrap()
            .contains("BSD-3-Clause"),
        "{licensed:#}"
    );
}

/// `--attest-format oci`: the statements are OCI 1.1 referrers of the image, which keeps
/// its single manifest; push sends them (listed under the `sha256-<hex>` fallback tag,
/// as this registry has no referrers API) and pull brings them back.
#[test]
fn oci_referrers_are_pushed_with_the_image_and_pulled_back() {
    require_privileges!();
    crate::support::require_tool("skopeo");
    let registry = TestRegistry::start();
    let env = busybox_env();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")],
    );
    let target = registry.reference("referred/app:1");
    let out = defaults(crate::registry_support::command(&env))
        .args([
            "build",
            "-q",
            "--sbom",
            "--attest-format",
            "oci",
            "-t",
            &target,
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    // The image itself: one manifest, no index.
    let manifest = json(&rbuild(&env, &["inspect", "--manifest", &target]));
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let provenance = json(&rbuild(&env, &["inspect", "--provenance", &target]));
    assert_eq!(
        provenance["predicateType"],
        "https://slsa.dev/provenance/v1"
    );

    assert_success(&rbuild(&env, &["push", &target]));
    let reference = format!("docker://{target}");
    let pushed = skopeo_json(&["inspect", "--tls-verify=false", "--raw", &reference]);
    assert_eq!(
        pushed["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let digest = crate::support::digest(
        &skopeo(&["inspect", "--tls-verify=false", "--raw", &reference]).stdout,
    );
    let fallback = format!(
        "docker://{}:sha256-{}",
        registry.reference("referred/app"),
        digest.trim_start_matches("sha256:")
    );
    let list = skopeo_json(&["inspect", "--tls-verify=false", "--raw", &fallback]);
    let entries = list["manifests"].as_array().unwrap();
    let mut types: Vec<&str> = entries
        .iter()
        .map(|e| {
            e["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
        })
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );
    for entry in entries {
        assert_eq!(entry["artifactType"], "application/vnd.in-toto+json");
        let artifact = skopeo_json(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!(
                "docker://{}@{}",
                registry.reference("referred/app"),
                entry["digest"].as_str().unwrap()
            ),
        ]);
        assert_eq!(artifact["subject"]["digest"], digest.as_str());
    }

    // Another store pulls the image and its referrers, which name the pulled image.
    let other = TestEnv::new();
    assert_success(&rbuild(&other, &["pull", &target]));
    let statement = json(&rbuild(&other, &["inspect", "--provenance", &target]));
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    let sbom = json(&rbuild(&other, &["inspect", "--sbom", &target]));
    assert_eq!(sbom["predicateType"], "https://spdx.dev/Document");
    // Kept while the image is, verified like every blob, saved and loaded with it.
    assert_success(&rbuild(&other, &["prune", "--all"]));
    json(&rbuild(&other, &["inspect", "--provenance", &target]));
    assert_success(&rbuild(&other, &["store", "verify"]));
    let archive = other.path("referred.tar");
    assert_success(&rbuild(
        &other,
        &["save", &target, "-o", archive.to_str().unwrap()],
    ));
    let third = TestEnv::new();
    assert_success(&rbuild(&third, &["load", "-i", archive.to_str().unwrap()]));
    json(&rbuild(&third, &["inspect", "--sbom", &target]));

    // A later build of the same image attaches its own statements, not the earlier ones.
    let rebuild = |extra: &[&str]| {
        let out = defaults(crate::registry_support::command(&env))
            .args(["build", "-q", "--attest-format", "oci", "-t", "again"])
            .args(extra)
            .arg(&ctx)
            .output()
            .unwrap();
        assert_success(&out);
    };
    rebuild(&["--sbom=format=cyclonedx"]);
    let sbom = json(&rbuild(&env, &["inspect", "--sbom", "again"]));
    assert_eq!(sbom["predicateType"], "https://cyclonedx.org/bom");
    rebuild(&["--provenance=false"]);
    assert_failure(&rbuild(&env, &["inspect", "--provenance", "again"]));
    assert_failure(&rbuild(&env, &["inspect", "--sbom", "again"]));

    // The same image built in the index form under another name: each name shows its own.
    rebuild(&["--sbom"]);
    let out = defaults(crate::registry_support::command(&env))
        .args(["build", "-q", "--sbom=format=cyclonedx", "-t", "indexed"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    let sbom = json(&rbuild(&env, &["inspect", "--sbom", "indexed"]));
    assert_eq!(sbom["predicateType"], "https://cyclonedx.org/bom");
    let sbom = json(&rbuild(&env, &["inspect", "--sbom", "again"]));
    assert_eq!(sbom["predicateType"], "https://spdx.dev/Document");

    // Pushed again after a build with other statements: the referrers tag lists this
    // build's, not the earlier push's too.
    let out = defaults(crate::registry_support::command(&env))
        .args([
            "build",
            "-q",
            "--attest-format",
            "oci",
            "--sbom=format=cyclonedx",
            "--provenance=false",
            "-t",
            &target,
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    assert_success(&rbuild(&env, &["push", &target]));
    let list = skopeo_json(&["inspect", "--tls-verify=false", "--raw", &fallback]);
    let types: Vec<&str> = list["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(types, ["https://cyclonedx.org/bom"]);
}

/// A multi-platform build attests each platform's image on its own.
#[test]
fn each_platform_of_a_multi_platform_image_has_its_own_provenance() {
    require_privileges!();
    let env = TestEnv::new();
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM scratch\nARG TARGETARCH\nCOPY $TARGETARCH.txt /arch.txt\n",
            ),
            ("amd64.txt", "a\n"),
            ("arm64.txt", "b\n"),
        ],
    );
    let out = defaults(env.command())
        .args([
            "build",
            "-q",
            "--sbom",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "multi",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    let out = env.rbuild(&["images", "--format", "json"]);
    assert_success(&out);
    let image: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(
        image["Platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    let mut contexts = Vec::new();
    for platform in ["linux/amd64", "linux/arm64"] {
        let statement =
            json(&env.rbuild(&["inspect", "--provenance", "--platform", platform, "multi"]));
        let manifest = env.rbuild(&["inspect", "--manifest", "--platform", platform, "multi"]);
        assert_success(&manifest);
        let definition = &statement["predicate"]["buildDefinition"];
        assert_eq!(
            definition["externalParameters"]["request"]["args"]["platform"],
            platform
        );
        let context = definition["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["uri"] == "context")
            .unwrap()["digest"]["sha256"]
            .clone();
        contexts.push(context);
        let sbom = json(&env.rbuild(&["inspect", "--sbom", "--platform", platform, "multi"]));
        assert_eq!(
            sbom["subject"][0]["digest"],
            statement["subject"][0]["digest"]
        );
    }
    // Each image read its own file of the context.
    assert_ne!(contexts[0], contexts[1]);
}

/// An SBOM of an image whose package database is corrupt fails the build, naming the file
/// and the line.
#[test]
fn a_corrupt_package_database_fails_the_sbom_naming_file_and_line() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY status /var/lib/dpkg/status\n",
            ),
            (
                "status",
                "Package: a\nStatus: install ok installed\nVersion: 1\n\n%%% garbage\n",
            ),
        ],
    );
    let out = defaults(env.command())
        .args(["build", "-q", "--sbom", "-t", "corrupt"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_failure(&out);
    let text = flat(&stderr(&out));
    assert!(text.contains("cannot make the image's SBOM"), "{text}");
    assert!(
        text.contains("/var/lib/dpkg/status line 5: `%%% garbage` is not a `Field: value` line"),
        "{text}"
    );
    // Nothing was named.
    assert_failure(&env.rbuild(&["inspect", "corrupt"]));
}

/// `mode=max` names the secrets a build was given by id; their values are nowhere in any
/// statement.
#[test]
fn max_provenance_names_secrets_by_id_and_never_their_values() {
    require_privileges!();
    let env = TestEnv::with_busybox();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nARG VISIBLE\nRUN --mount=type=secret,id=token wc -c /run/secrets/token > /count\n",
        )],
    );
    let secret = env.path("token");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let out = defaults(env.command())
        .args([
            "build",
            "-q",
            "--provenance=max",
            "--sbom",
            "-t",
            "app",
            "--build-arg",
            "VISIBLE=yes",
        ])
        .arg(format!("--secret=id=token,src={}", secret.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert_success(&out);
    let provenance = json(&env.rbuild(&["inspect", "--provenance", "app"]));
    let request = &provenance["predicate"]["buildDefinition"]["externalParameters"]["request"];
    assert_eq!(request["secrets"], serde_json::json!(["token"]));
    assert_eq!(request["args"]["build-arg:VISIBLE"], "yes");
    for kind in ["--provenance", "--sbom"] {
        let out = env.rbuild(&["inspect", kind, "app"]);
        assert!(!stdout(&out).contains("s3cr3t"), "{kind}: {}", stdout(&out));
    }
}
