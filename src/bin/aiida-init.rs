//! `aiida-init`: the container init. Installed as `/init` in the images.
fn main() {
    eprintln!("aiida-init: not built yet");
    std::process::exit(111);
}
