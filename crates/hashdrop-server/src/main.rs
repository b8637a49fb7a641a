//! Placeholder until the server issue lands.
fn main() {
    println!("hashdrop-server: not built yet");
}
