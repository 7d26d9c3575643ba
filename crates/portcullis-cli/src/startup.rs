//! What `portcullis serve` says at startup about the policy it enforces: each route with what it requires, and
//! what requests no route matches get — also when flags alone configure it and there are no routes.

use portcullis_gateway::{Config, DpopSetting, IssuerConfig, RouteConfig, Unmatched};

/// One line per route, then one about unmatched requests.
pub(crate) fn policy_lines(config: &Config) -> Vec<String> {
    let mut lines: Vec<String> = config.routes.iter().map(|route| route_line(config, route)).collect();
    lines.push(match (config.unmatched, config.routes.is_empty()) {
        (Unmatched::Authenticated, true) => {
            format!("no routes configured: every request needs {}", token_from(&config.issuers, &[]))
        }
        (Unmatched::Authenticated, false) => {
            format!("requests no route matches need {}", token_from(&config.issuers, &[]))
        }
        (_, true) => "no routes configured: every request is answered 404".to_owned(),
        (_, false) => "requests no route matches are answered 404".to_owned(),
    });
    if let Some(url) = &config.store.redis_url {
        let on_failure = match config.store.replay_on_failure {
            portcullis_gateway::ReplayOnFailure::LocalOnly => "checked in this replica's memory",
            _ => "refused (503)",
        };
        lines.push(format!(
            "shared store: Redis at {} (budget {} ms per call; DPoP proofs {on_failure} while it is down)",
            without_credentials(url),
            config.store.timeout_ms
        ));
    }
    if let Some(revocation) = &config.revocation {
        lines.push(format!(
            "revocations: POST /revocations on the admin listener takes tokens of {} for {} with {}",
            revocation.issuer, revocation.audience, revocation.permission
        ));
    }
    lines
}

/// `url` without its user information (a password never reaches a log).
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}{}", &rest[authority_end..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn route_line(config: &Config, route: &RouteConfig) -> String {
    let methods = if route.methods.is_empty() { "any method".to_owned() } else { route.methods.join(", ") };
    let access = if let Some(front) = route.forward_auth {
        format!("forward-auth endpoint for {}", front.name())
    } else if route.public {
        "public, no token read".to_owned()
    } else {
        let issuers: Vec<IssuerConfig> = config
            .issuers
            .iter()
            .filter(|issuer| route.issuers.is_empty() || route.issuers.contains(&issuer.issuer))
            .cloned()
            .collect();
        let mut access = format!("needs {}", token_from(&issuers, &route.audiences));
        if let Some(rule) = &route.require {
            access.push_str(&format!(" meeting {rule}"));
        }
        if let Some(dpop) = dpop_mode(config, route, &issuers) {
            access.push_str(&format!(", DPoP {dpop}"));
        }
        access
    };
    format!("route {} ({methods}): {access}", route.path)
}

/// The DPoP mode of `route` when DPoP is on anywhere: its own, else its issuers' (`per issuer` when they differ).
fn dpop_mode(config: &Config, route: &RouteConfig, issuers: &[IssuerConfig]) -> Option<&'static str> {
    let on = |setting: Option<DpopSetting>| setting.is_some_and(|s| s != DpopSetting::Off);
    let anywhere = config.dpop.mode != DpopSetting::Off
        || config.issuers.iter().any(|issuer| on(issuer.dpop))
        || config.routes.iter().any(|route| on(route.dpop));
    if !anywhere {
        return None;
    }
    if let Some(own) = route.dpop {
        return Some(own.name());
    }
    let mut modes = issuers.iter().map(|issuer| issuer.dpop.unwrap_or(config.dpop.mode).name());
    let first = modes.next().unwrap_or(config.dpop.mode.name());
    Some(if modes.all(|mode| mode == first) { first } else { "per issuer" })
}

/// `a valid token from ISSUER (audience AUD) or …`; `audiences`, when not empty, narrows each issuer's.
fn token_from(issuers: &[IssuerConfig], audiences: &[String]) -> String {
    let each: Vec<String> = issuers
        .iter()
        .map(|issuer| {
            let accepted: Vec<&str> = issuer
                .audiences
                .iter()
                .filter(|audience| audiences.is_empty() || audiences.contains(audience))
                .map(String::as_str)
                .collect();
            let word = if accepted.len() == 1 { "audience" } else { "audiences" };
            format!("{} ({word} {})", issuer.issuer, accepted.join(", "))
        })
        .collect();
    if each.is_empty() {
        "a valid token (no issuer accepts it)".to_owned()
    } else {
        format!("a valid token from {}", each.join(" or "))
    }
}

#[cfg(test)]
mod tests {
    use super::policy_lines;
    use portcullis_gateway::{Config, IssuerConfig, Unmatched};

    #[test]
    fn routes_and_unmatched_requests_are_described() {
        let mut config = Config::defaults();
        config.issuers.push(IssuerConfig::new("https://a.example/", ["https://api", "https://other"]));
        config.issuers.push(IssuerConfig::new("https://b.example/", ["https://api"]));
        config.unmatched = Unmatched::Authenticated;
        assert_eq!(
            policy_lines(&config),
            ["no routes configured: every request needs a valid token from https://a.example/ (audiences \
              https://api, https://other) or https://b.example/ (audience https://api)"]
        );

        let file = r#"
            upstream = "http://127.0.0.1:3000"
            [[issuers]]
            issuer = "https://a.example/"
            audiences = ["https://api", "https://other"]
            [[issuers]]
            issuer = "https://b.example/"
            audiences = ["https://api"]
            [[routes]]
            path = "/health"
            public = true
            [[routes]]
            path = "/api/*"
            methods = ["GET", "POST"]
            issuers = ["https://a.example/"]
            audiences = ["https://other"]
            require = { scope = "read:messages" }
        "#;
        let config = Config::parse_toml(file).unwrap();
        assert_eq!(
            policy_lines(&config),
            [
                "route /health (any method): public, no token read",
                "route /api/* (GET, POST): needs a valid token from https://a.example/ (audience https://other) \
                 meeting scope 'read:messages'",
                "requests no route matches are answered 404",
            ]
        );

        let with_dpop = file
            .replace("upstream =", "public_url = \"https://api.example.com\"\nupstream =")
            .replace("audiences = [\"https://api\"]\n", "audiences = [\"https://api\"]\ndpop = \"required\"\n")
            .replace(
                "public = true",
                "public = true\n[[routes]]\npath = \"/b/*\"\ndpop = \"off\"\n[[routes]]\npath = \"/all/*\"",
            );
        let config = Config::parse_toml(&with_dpop).unwrap();
        let lines = policy_lines(&config);
        assert!(lines[1].ends_with(", DPoP off"), "{lines:?}");
        assert!(lines[2].ends_with(", DPoP per issuer"), "{lines:?}");
        assert!(lines[3].ends_with("meeting scope 'read:messages', DPoP off"), "{lines:?}");
    }
}
