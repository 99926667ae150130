//! `--target`: restricts a plan to some instances (between the plan and render stages). Pure: it
//! filters a computed plan, so that the checks that look at the whole fleet (an alias held by
//! another instance) still see every instance.
//!
//! A target is a domain (normalized as in the config) or a glob (`*.example.com`, `shop-?.test`,
//! `{a,b}.example.com`), matched case-insensitively against the domains declared or existing. A
//! target that matches nothing is an error: a typo must not turn into an empty plan.

use std::collections::BTreeSet;

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::actual::Actual;
use crate::desired::Desired;
use crate::plan::Plan;

/// A `--target` value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("--target {target:?} is not a valid domain or glob: {reason}")]
    Invalid { target: String, reason: String },
    #[error("--target {target:?} matches no instance declared in the configuration or existing in the store")]
    NoMatch { target: String },
}

/// Parsed `--target` patterns.
#[derive(Debug, Clone)]
pub struct Targets {
    /// As normalized (domains) or lowercased (globs), in the order given, without duplicates.
    pub patterns: Vec<String>,
    matchers: Vec<GlobMatcher>,
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', ']', '{', '}'])
}

impl Targets {
    /// Parses the patterns; `None` when there are none (the whole plan).
    pub fn parse(raw: &[String]) -> Result<Option<Targets>, TargetError> {
        if raw.is_empty() {
            return Ok(None);
        }
        let mut patterns: Vec<String> = Vec::new();
        for t in raw {
            let p = if is_glob(t) {
                t.trim().to_lowercase()
            } else {
                crate::domain::validate_domain(t).map_err(|e| TargetError::Invalid {
                    target: t.clone(),
                    reason: e.to_string(),
                })?
            };
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        let matchers = patterns
            .iter()
            .map(|p| {
                let glob: Result<Glob, _> = GlobBuilder::new(p)
                    .case_insensitive(true)
                    .literal_separator(false)
                    .backslash_escape(true)
                    .build();
                glob.map(|g| g.compile_matcher()).map_err(|e| TargetError::Invalid {
                    target: p.clone(),
                    reason: e.kind().to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Targets { patterns, matchers }))
    }

    /// Whether a domain is targeted.
    pub fn matches(&self, domain: &str) -> bool {
        self.matchers.iter().any(|m| m.is_match(domain))
    }

    /// Restricts `plan` to the targeted instances. Every pattern must match a domain declared in
    /// `desired` or existing in `actual`.
    pub fn restrict(&self, plan: &mut Plan, desired: &Desired, actual: &Actual) -> Result<(), TargetError> {
        let known: BTreeSet<&str> = desired
            .instances
            .keys()
            .map(String::as_str)
            .chain(actual.instances.iter().map(|i| i.domain.as_str()))
            .chain(actual.ambiguous.iter().map(String::as_str))
            .collect();
        for (p, m) in self.patterns.iter().zip(&self.matchers) {
            if !known.iter().any(|d| m.is_match(d)) {
                return Err(TargetError::NoMatch { target: p.clone() });
            }
        }
        plan.instances.retain(|i| self.matches(&i.domain));
        // Plan errors name their instance first (`<domain>: …`).
        plan.errors
            .retain(|e| e.split_once(": ").is_none_or(|(domain, _)| self.matches(domain)));
        plan.findings
            .retain(|f| f.domain.as_deref().is_none_or(|d| self.matches(d)));
        // Leftovers belong to no targeted instance: only a whole plan removes them.
        plan.orphans.clear();
        plan.targets = self.patterns.clone();
        Ok(())
    }

    /// The warning printed on stderr by every command that plans with targets.
    pub fn warning(&self) -> String {
        format!(
            "warning: resource targeting is in effect\n  This plan covers only the instances matching --target {}: other instances may\n  differ from the configuration, and are neither shown nor changed. Use --target for exceptional\n  cases (repairing or retrying one instance), not routinely.",
            self.patterns.join(", --target ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DesiredInstance;
    use crate::plan;

    fn desired(domains: &[&str]) -> Desired {
        plan::tests::desired(domains.iter().map(|d| DesiredInstance::new(*d)).collect(), false)
    }

    #[test]
    fn a_glob_restricts_the_plan_to_matching_domains() {
        let d = desired(&["a.example.com", "b.example.com", "c.other.org"]);
        let a = Actual::default();
        let mut p = plan::plan(&d, &a);
        let t = Targets::parse(&["*.EXAMPLE.com".into()]).unwrap().unwrap();
        t.restrict(&mut p, &d, &a).unwrap();
        let domains: Vec<&str> = p.instances.iter().map(|i| i.domain.as_str()).collect();
        assert_eq!(domains, ["a.example.com", "b.example.com"]);
        assert_eq!(p.targets, ["*.example.com"]);
    }

    #[test]
    fn a_target_matching_nothing_is_an_error_naming_it() {
        let d = desired(&["a.example.com"]);
        let a = Actual::default();
        let mut p = plan::plan(&d, &a);
        let t = Targets::parse(&["a.example.com".into(), "typo.example.com".into()])
            .unwrap()
            .unwrap();
        let e = t.restrict(&mut p, &d, &a).unwrap_err();
        assert!(e.to_string().contains("\"typo.example.com\""), "{e}");
    }

    #[test]
    fn a_domain_target_is_normalized_and_an_invalid_one_refused() {
        let t = Targets::parse(&["Shop.Example.COM".into()]).unwrap().unwrap();
        assert_eq!(t.patterns, ["shop.example.com"]);
        assert!(t.matches("shop.example.com"));
        assert!(!t.matches("x.shop.example.com"));
        assert!(Targets::parse(&["a/b".into()]).is_err());
        assert!(Targets::parse(&["[a".into()]).is_err());
        assert!(Targets::parse(&[]).unwrap().is_none());
    }
}
