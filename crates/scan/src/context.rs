//! Where a finding sits: test and fixture code holds throw-away credentials more
//! often than live ones, so findings there are reported one confidence level lower.

/// Directory names that hold tests, fixtures or mocks (compared case-insensitively).
const TEST_DIRS: &[&str] = &[
    "test",
    "tests",
    "spec",
    "specs",
    "__tests__",
    "testdata",
    "test-data",
    "test_data",
    "fixture",
    "fixtures",
    "__fixtures__",
    "mock",
    "mocks",
    "__mocks__",
    "testing",
    "e2e",
    "integration-tests",
    "unittests",
    "testutil",
    "testutils",
];

/// True when `path` (as reported: `/` or `\` separated, `archive!inner` allowed) is
/// test or fixture code: a test directory anywhere in it, or a test file name
/// (`foo_test.go`, `foo.test.ts`, `foo.spec.js`, `test_foo.py`, `FooTest.java`,
/// `FooTests.cs`).
pub fn is_test_path(path: &str) -> bool {
    let mut parts = path
        .split(['/', '\\', '!'])
        .filter(|p| !p.is_empty())
        .peekable();
    while let Some(part) = parts.next() {
        let lower = part.to_ascii_lowercase();
        if parts.peek().is_some() {
            if TEST_DIRS.contains(&lower.as_str()) {
                return true;
            }
            continue;
        }
        let stem = lower.split('.').next().unwrap_or("");
        return stem.ends_with("_test")
            || stem.starts_with("test_")
            || lower.contains(".test.")
            || lower.contains(".spec.")
            || stem.ends_with("_spec")
            || part
                .split('.')
                .next()
                .is_some_and(|s| s.ends_with("Test") || s.ends_with("Tests"));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::is_test_path;

    #[test]
    fn test_paths_are_recognised() {
        for p in [
            "src/test/java/App.java",
            "pkg/auth/auth_test.go",
            "web/login.spec.ts",
            "tests/conftest.py",
            "python/test_client.py",
            "src/AppTests.cs",
            "spec/models/user_spec.rb",
            "a.zip!fixtures/k.pem",
        ] {
            assert!(is_test_path(p), "{p}");
        }
        for p in [
            "src/main.rs",
            "config/prod.yml",
            "contest/entry.py",
            "latest/x.txt",
            "-",
        ] {
            assert!(!is_test_path(p), "{p}");
        }
    }
}
