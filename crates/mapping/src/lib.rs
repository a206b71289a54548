//! placeholder
#[cfg(test)]
mod scratch {
    use sonic_rs::{PointerTree, JsonValueTrait};
    fn run(tree_paths: &[&[&str]], json: &str) {
        let mut tree = PointerTree::new();
        for p in tree_paths { tree.add_path(p.iter()); }
        let r = std::panic::catch_unwind(|| sonic_rs::get_many(json, &tree).map(|v| v.iter().map(|x| x.as_ref().map(|l| l.as_raw_str().to_string())).collect::<Vec<_>>()));
        match r { Ok(Ok(v)) => println!("{json:?} -> {v:?}"), Ok(Err(e)) => println!("{json:?} -> ERR {e} nf={} ty={} syn={}", e.is_not_found(), e.is_unmatched_type(), e.is_syntax()), Err(_) => println!("{json:?} -> PANIC") }
    }
    #[test]
    fn quirks() {
        run(&[&["a"]], r#"{"a":1, "b": xx"#);
        run(&[&["a"],&[]], r#"{"a":1, "b": xx"#);
        run(&[&["a"],&[]], r#"{"a":1, "b": 2} zz"#);
        run(&[&["a","b"]], r#"{"a":{}, "b": 2}"#);
        run(&[&["a","b"], &["c"]], r#"{"a":"str", "c": 2}"#);
        run(&[&["a"], &["c"]], r#"{"a":1, "a": 2}"#);
        run(&[&["a"], &["a", "x"]], r#"{"a":{"x":1,"x":2}}"#);
        run(&[&["a"], &[]], r#"{"a":1,"a":2, "c": 3}"#);
        run(&[&["a"]], r#"[1]"#);
        run(&[&["a"]], r#"{"a":"\u00e9\ud83d\ude00"}"#);
        run(&[&["a"]], "{\"a\":\"x\u{1}\"}");
        run(&[&["a"]], r#"{"a":01}"#);
        run(&[&["a"]], r#"{"a":1.}"#);
        run(&[&["a"]], r#"{"a":"\ud800"}"#);
        let lv = sonic_rs::get_from_str(r#"{"a":"\u00e9\ud83d\ude00 \"q\""}"#, &["a"]).unwrap();
        println!("{:?}", lv.as_str());
    }
}
