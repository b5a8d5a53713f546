//! `aiida-init`: the container init, installed as `/init` in the images. See the crate documentation.
fn main() {
    aiida_init::main()
}
