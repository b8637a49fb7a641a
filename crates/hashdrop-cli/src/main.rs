//! Placeholder until the CLI issue lands.
fn main() {
    println!("hashdrop: not built yet");
}
