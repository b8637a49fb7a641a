//! Share links as QR codes drawn in the terminal, for opening a link on a phone.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

/// `text` as a QR code of Unicode half blocks (two modules per character cell, so
/// the code stays square in a terminal), with the four-module quiet zone scanners
/// need. Light modules are drawn as blocks: terminals usually have dark backgrounds,
/// the same convention as `qrencode -t UTF8`.
pub fn render(text: &str) -> anyhow::Result<String> {
    // Level M survives a smudged screen while keeping a ~150-character link at a
    // size that fits an 80-column terminal.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| anyhow::anyhow!("cannot draw this link as a QR code: {e}"))?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::render;

    /// Turns the drawing back into pixels (block = light) and reads it with an
    /// independent decoder: the code must carry exactly the link.
    fn decode(drawing: &str) -> String {
        const SCALE: usize = 4;
        let rows: Vec<Vec<char>> = drawing.lines().map(|l| l.chars().collect()).collect();
        let width = rows.iter().map(Vec::len).max().unwrap();
        let height = rows.len() * 2;
        let light = |x: usize, y: usize| -> bool {
            let c = rows[y / 2].get(x).copied().unwrap_or(' ');
            match (c, y % 2) {
                ('█', _) => true,
                ('▀', 0) | ('▄', 1) => true,
                ('▀', _) | ('▄', _) | (' ', _) => false,
                (other, _) => panic!("unexpected character {other:?} in the drawing"),
            }
        };
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(width * SCALE, height * SCALE, |x, y| {
                if light(x / SCALE, y / SCALE) {
                    255
                } else {
                    0
                }
            });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the drawing");
        grids[0].decode().expect("the QR code decodes").1
    }

    #[test]
    fn a_share_link_round_trips_through_the_drawing() {
        let link = "https://hashdrop.example/d/0b9c7c36-93a4-4d55-9fb7-3f3b6a7c9e01#\
                    AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS3290GG";
        let drawing = render(link).unwrap();
        assert_eq!(decode(&drawing), link);
        // Fits an 80-column terminal.
        assert!(
            drawing.lines().all(|l| l.chars().count() <= 80),
            "{drawing}"
        );
    }

    #[test]
    fn a_different_link_gives_a_different_code() {
        let a = render("http://127.0.0.1:8080/d/a").unwrap();
        let b = render("http://127.0.0.1:8080/d/b").unwrap();
        assert_ne!(a, b);
        assert_eq!(decode(&b), "http://127.0.0.1:8080/d/b");
    }
}
