//! `aiida-init`: the container init, installed as `/init` in the images. See [`aiida_devc::init`].
fn main() {
    aiida_devc::init::main()
}
