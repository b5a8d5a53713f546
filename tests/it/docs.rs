//! The generated READMEs of the Features and Templates: the committed ones are current, a changed
//! option makes them stale until regenerated, metadata the docs cannot use is named, and the
//! structure matches what the reference CLI's `generate-docs` writes for the same sources.

use crate::support::{Need, skip_without};
use std::path::Path;

use crate::support::collections::{aiida_devc, devcontainer, scratch_copy};
use crate::support::project_root;

const COLLECTIONS: [(&str, &str); 2] = [
    ("features", "features"),
    ("templates", "devcontainer-templates"),
];

#[test]
fn the_committed_readmes_are_current() {
    for (kind, folder) in COLLECTIONS {
        let src = project_root().join(folder).join("src");
        let run = aiida_devc(&[kind, "docs", src.to_str().unwrap(), "--check"], &[]);
        assert!(
            run.success,
            "the {kind} READMEs are not current; run `aiida-devc {kind} docs {folder}/src`:\n{}",
            run.stderr
        );
        for item in std::fs::read_dir(&src).unwrap() {
            let item = item.unwrap().path();
            assert!(
                item.join("NOTES.md").is_file(),
                "{} has no NOTES.md",
                item.display()
            );
        }
    }
}

#[test]
fn a_changed_option_makes_the_readme_stale_until_regenerated() {
    let (_dir, features) = scratch_copy("features");
    let src = features.join("src");
    let metadata = src.join("aiida-services/devcontainer-feature.json");
    let readme = src.join("aiida-services/README.md");
    let text = std::fs::read_to_string(&metadata).unwrap();
    let changed = text.replace("\"default\": \"120\"", "\"default\": \"240\"");
    assert_ne!(text, changed, "the waitTimeout default moved");
    std::fs::write(&metadata, changed).unwrap();

    let check = aiida_devc(&["features", "docs", src.to_str().unwrap(), "--check"], &[]);
    assert!(!check.success, "a stale README passed the check");
    assert!(
        check.stderr.contains(&readme.display().to_string())
            && check.stderr.contains("aiida-devc features docs"),
        "the error names the stale README and the fix:\n{}",
        check.stderr
    );
    let json = aiida_devc(
        &[
            "features",
            "docs",
            src.to_str().unwrap(),
            "--check",
            "--json",
        ],
        &[],
    );
    assert_eq!(json.json()["stale"], serde_json::json!([readme]));

    let write = aiida_devc(&["features", "docs", src.to_str().unwrap()], &[]).ok("docs");
    assert!(
        write
            .stdout
            .contains(&format!("wrote {}", readme.display())),
        "{}",
        write.stdout
    );
    assert!(
        std::fs::read_to_string(&readme)
            .unwrap()
            .contains("| waitTimeout | Seconds that lifecycle commands wait for the services to become ready before failing. | string | 240 |"),
        "the table shows the new default"
    );
    aiida_devc(&["features", "docs", src.to_str().unwrap(), "--check"], &[])
        .ok("check after regenerating");
    let again = aiida_devc(&["features", "docs", src.to_str().unwrap()], &[]).ok("docs again");
    assert!(!again.stdout.contains("wrote"), "{}", again.stdout);
}

#[test]
fn metadata_without_what_the_docs_need_is_named_and_nothing_is_written() {
    let (_dir, templates) = scratch_copy("devcontainer-templates");
    let src = templates.join("src");
    let metadata = src.join("aiida-plugin-lite/devcontainer-template.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&metadata).unwrap()).unwrap();
    value.as_object_mut().unwrap().remove("description");
    std::fs::write(&metadata, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    // A stale README elsewhere must stay as it is: nothing is written when a file is bad.
    let other = src.join("aiida-plugin/README.md");
    std::fs::write(&other, "old\n").unwrap();

    let run = aiida_devc(&["templates", "docs", src.to_str().unwrap()], &[]);
    assert!(!run.success, "docs succeeded without a description");
    assert!(
        run.stderr.contains(&format!(
            "{}:1:1: the README needs a 'description'",
            metadata.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "old\n");
}

/// The `#`-headings of a markdown text, in order, outside code blocks.
fn headings(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(line.to_owned());
        }
    }
    out
}

/// The rows of the options table.
fn option_rows(text: &str) -> Vec<String> {
    let mut rows: Vec<String> = text
        .lines()
        .skip_while(|l| *l != "## Options")
        .skip(4)
        .take_while(|l| l.starts_with("| "))
        .map(str::to_owned)
        .collect();
    rows.sort();
    rows
}

fn readme(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("README.md")).unwrap()
}

#[test]
fn the_readmes_have_the_structure_of_the_reference_clis() {
    if skip_without(&[Need::DevcontainerCli]) {
        return;
    }
    for (kind, folder) in COLLECTIONS {
        let (_ours_dir, ours) = scratch_copy(folder);
        let (_theirs_dir, theirs) = scratch_copy(folder);
        aiida_devc(&[kind, "docs", ours.join("src").to_str().unwrap()], &[]).ok("aiida-devc docs");
        let mut args = vec![kind, "generate-docs", "-p"];
        let theirs_src = theirs.join("src");
        args.push(theirs_src.to_str().unwrap());
        if kind == "features" {
            args.extend(["-n", "aiidateam/devcontainer-features"]);
        }
        devcontainer(&args).ok("devcontainer generate-docs");
        for item in std::fs::read_dir(ours.join("src")).unwrap() {
            let item = item.unwrap().file_name();
            let (ours, theirs) = (
                readme(&ours.join("src").join(&item)),
                readme(&theirs_src.join(&item)),
            );
            let name = item.to_string_lossy();
            // Every heading of theirs is in ours, in the same order (the NOTES.md ones included).
            let ours_headings = headings(&ours);
            let mut remaining = ours_headings.iter();
            for heading in headings(&theirs).iter().skip(1) {
                assert!(
                    remaining.any(|h| h == heading),
                    "{kind} {name}: '{heading}' missing or out of order in ours: {ours_headings:#?}"
                );
            }
            assert_eq!(option_rows(&ours), option_rows(&theirs), "{kind} {name}");
            // The Feature usage block is the same text, major version included.
            if kind == "features" {
                let usage = format!(
                    "\"features\": {{\n    \"ghcr.io/aiidateam/devcontainer-features/{name}:0\": {{}}\n}}"
                );
                assert!(ours.contains(&usage) && theirs.contains(&usage), "{name}");
            } else {
                assert!(
                    ours.contains(&format!(
                        "devcontainer templates apply -t ghcr.io/aiidateam/devcontainer-templates/{name}:0"
                    )),
                    "{name}"
                );
            }
        }
    }
}
