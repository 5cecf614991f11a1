//! Reading the plain HTML forms both services render, as a browser's user would: hidden
//! inputs, form actions and data attributes. Values are unescaped as the browser does.

/// The value of input `name` in a page (attributes in any order).
pub fn input(body: &str, name: &str) -> Option<String> {
    let at = body.find(&format!("name=\"{name}\""))?;
    let tag_start = body[..at].rfind('<')?;
    let tag_end = at + body[at..].find('>')?;
    attribute_in(&body[tag_start..tag_end], "value")
}

/// The first link (`href`) that starts with `prefix`.
pub fn link(body: &str, prefix: &str) -> Option<String> {
    body.match_indices("href=\"").find_map(|(i, _)| {
        let rest = &body[i + 6..];
        let a = unescape(&rest[..rest.find('"')?]);
        a.starts_with(prefix).then_some(a)
    })
}

/// The action of the first form whose action ends with `suffix`.
pub fn form_action(body: &str, suffix: &str) -> Option<String> {
    body.match_indices("action=\"").find_map(|(i, _)| {
        let rest = &body[i + 8..];
        let a = unescape(&rest[..rest.find('"')?]);
        a.ends_with(suffix).then_some(a)
    })
}

/// The HTML of the first form whose action ends with `suffix` (its inputs, for a page
/// with several forms).
pub fn form<'a>(body: &'a str, suffix: &str) -> Option<&'a str> {
    body.match_indices("<form").find_map(|(i, _)| {
        let end = body[i..].find("</form>").map_or(body.len(), |e| i + e);
        let html = &body[i..end];
        attribute_in(&html[..html.find('>')?], "action")
            .filter(|a| a.ends_with(suffix))
            .map(|_| html)
    })
}

/// An attribute's value inside the first element that has `marker` in it.
pub fn attribute(body: &str, marker: &str, name: &str) -> Option<String> {
    let at = body.find(marker)?;
    let tag_end = body[at..].find('>')? + at;
    attribute_in(&body[at..tag_end], name)
}

/// The value of attribute `name` in `tag` (a whole attribute name, not a suffix of one).
fn attribute_in(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let (i, _) = tag.match_indices(&needle).find(|(i, _)| {
        tag[..*i]
            .chars()
            .next_back()
            .is_none_or(char::is_whitespace)
    })?;
    let rest = &tag[i + needle.len()..];
    Some(unescape(&rest[..rest.find('"')?]))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_attributes_are_read() {
        let page = r#"<section data-campaign="c1" data-units="50"><form action="/s/c/c1/join?a=1&amp;b=2"><input type="hidden" name="csrf" value="x&amp;y"><input value="v" name="other"></form>"#;
        assert_eq!(input(page, "csrf").as_deref(), Some("x&y"));
        assert_eq!(input(page, "other").as_deref(), Some("v"));
        assert_eq!(
            form_action(page, "/join?a=1&b=2").as_deref(),
            Some("/s/c/c1/join?a=1&b=2")
        );
        assert_eq!(
            attribute(page, "data-campaign=", "data-units").as_deref(),
            Some("50")
        );
        assert_eq!(input(page, "missing"), None);
        let two = r#"<form action="/a"><input name="csrf" value="1"></form><form action="/b"><input name="csrf" value="2"></form>"#;
        assert_eq!(
            form(two, "/b").and_then(|f| input(f, "csrf")).as_deref(),
            Some("2")
        );
        assert_eq!(
            attribute(page, "data-campaign=", "units"),
            None,
            "a whole attribute name, not the end of one"
        );
    }
}
