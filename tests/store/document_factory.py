"""Builders for test documents: every fixture is generated here, none comes from disk."""

from __future__ import annotations

import zipfile
from email.message import EmailMessage
from pathlib import Path

from bastion.store.parsers import ParseOutcome


def write_pdf(path: Path, pages: list[str], *, title: str | None = None) -> Path:
    """A PDF with one line of text per page (empty strings make blank pages)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    if title:
        pdf.setTitle(title)
    for text in pages:
        if text:
            pdf.drawString(72, 760, text)
        else:
            pdf.rect(72, 600, 200, 100, fill=1)  # an "image": ink but no text
        pdf.showPage()
    pdf.save()
    return path


def write_pdf_form(path: Path) -> Path:
    """A two-page application form made by reportlab, then filled in with pypdf.

    Page 1: a text field with a tooltip, a ticked and an unticked check box, a radio group
    with its second button chosen, an empty text field. Page 2: a text field and a combo box.
    """
    from pypdf import PdfReader, PdfWriter
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    blank = path.with_suffix(".blank.pdf")
    pdf = canvas.Canvas(str(blank), pagesize=A4)
    form = pdf.acroForm
    pdf.drawString(72, 780, "Application for a mooring permit")
    form.textfield(name="applicant", tooltip="Applicant name", x=72, y=700, width=200, height=20)
    form.checkbox(name="insured", x=72, y=650, checked=True)
    form.checkbox(name="newsletter", x=120, y=650, checked=False)
    form.radio(name="hull", value="monohull", selected=False, x=72, y=600)
    form.radio(name="hull", value="catamaran", selected=True, x=120, y=600)
    form.textfield(name="remarks", x=72, y=550, width=200, height=20)
    pdf.showPage()
    pdf.drawString(72, 780, "Berth details")
    form.textfield(name="harbour", x=72, y=700, width=200, height=20, value="Valparaiso")
    form.choice(name="season", value="winter", options=["summer", "winter"], x=72, y=650,
                width=100, height=20)
    pdf.showPage()
    pdf.save()
    writer = PdfWriter(clone_from=PdfReader(blank))
    writer.update_page_form_field_values(
        writer.pages[0], {"applicant": "Zephyrine Quayle"}, auto_regenerate=False
    )
    with path.open("wb") as handle:
        writer.write(handle)
    blank.unlink()
    return path


def arabic_font() -> Path | None:
    """A TrueType font with Arabic glyphs on this system (fontconfig's choice), or None."""
    import shutil
    import subprocess

    if shutil.which("fc-list") is None:
        return None
    listed = subprocess.run(
        ["fc-list", ":lang=ar", "file"], capture_output=True, text=True, check=False
    ).stdout
    fonts = sorted(line.strip().rstrip(":") for line in listed.splitlines() if line.strip())
    return next((Path(f) for f in fonts if f.lower().endswith(".ttf")), None)


def write_rtl_pdf(path: Path, font: Path, pages: list[str]) -> Path:
    """A PDF of right-to-left lines drawn the way real producers draw them: in visual order.

    Each page's text is given in logical order (as typed). Each line is written reversed, right
    aligned, in one text operator: the content stream holds the glyphs left to right as they
    appear, the first character typed rightmost, as in PDFs from word processors and browsers.
    (Reading that stream in order gives the words backwards.)
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(TTFont("RTLTestFont", str(font)))
    pdf = canvas.Canvas(str(path), pagesize=A4)
    for text in pages:
        pdf.setFont("RTLTestFont", 14)
        for number, line in enumerate(text.split("\n")):
            pdf.drawRightString(520, 760 - 24 * number, line[::-1])
        pdf.showPage()
    pdf.save()
    return path


def encrypt_pdf(
    source: Path, target: Path, *, user_password: str, algorithm: str = "AES-256"
) -> Path:
    """A copy of ``source`` encrypted with pypdf."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    with target.open("wb") as handle:
        writer.write(handle)
    return target


def write_docx(path: Path) -> Path:
    """A DOCX with a title, headings, paragraphs and a table, in that order."""
    import docx

    document = docx.Document()
    document.core_properties.title = "Quarterly report"
    document.add_heading("Quarterly report", level=0)
    document.add_heading("Introduction", level=1)
    document.add_paragraph("The first paragraph mentions aardvarks.")
    document.add_paragraph("The second paragraph mentions zebras.")
    document.add_heading("Numbers", level=2)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Region"
    table.cell(0, 1).text = "Revenue"
    table.cell(1, 0).text = "North"
    table.cell(1, 1).text = "42"
    document.add_paragraph("After the table.")
    document.save(str(path))
    return path


def write_pptx(path: Path) -> Path:
    """A three-slide deck; slide 2 has a table and speaker notes."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for number in range(1, 4):
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        slide.shapes.title.text = f"Slide title {number}"
        box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(6), Inches(1))
        box.text_frame.text = f"Body text on slide {number}"
        if number == 2:
            table = slide.shapes.add_table(2, 2, Inches(1), Inches(4), Inches(4), Inches(1)).table
            table.cell(0, 0).text = "Key"
            table.cell(0, 1).text = "Value"
            table.cell(1, 0).text = "colour"
            table.cell(1, 1).text = "teal"
            slide.notes_slide.notes_text_frame.text = "Remember the teal."
    deck.save(str(path))
    return path


def write_xlsx(path: Path) -> Path:
    """Two sheets: Sales with numbers and a formula, and Notes with text."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sales = workbook.active
    sales.title = "Sales"
    sales.append(["Region", "Amount"])
    sales.append(["North", 10])
    sales.append(["South", 32])
    notes = workbook.create_sheet("Notes")
    notes.append(["Budget approved by the board"])
    workbook.save(str(path))
    return path


def write_odt(path: Path) -> Path:
    """An ODT with a heading and two paragraphs."""
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Minutes"))
    document.text.addElement(P(text="The committee met on Tuesday."))
    document.text.addElement(P(text="Pelicans were discussed."))
    document.save(str(path))
    return path


def write_epub(path: Path) -> Path:
    """An EPUB with two chapters."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("test-book")
    book.set_title("A Test Book")
    book.set_language("en")
    chapters = []
    for number, body in (
        (1, "The lighthouse keeper woke early."),
        (2, "Storms came in the autumn."),
    ):
        chapter = epub.EpubHtml(
            title=f"Chapter {number}", file_name=f"chap{number}.xhtml", lang="en"
        )
        chapter.content = f"<h1>Chapter {number}</h1><p>{body}</p>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(path), book)
    return path


def write_eml(path: Path, *, html: bool = False) -> Path:
    """A mail with headers, a body (plain or HTML) and one attachment."""
    message = EmailMessage()
    message["From"] = "Alice <alice@example.org>"
    message["To"] = "Bob <bob@example.org>"
    message["Subject"] = "Budget meeting"
    message["Date"] = "Tue, 04 Mar 2025 10:00:00 +0000"
    if html:
        message.set_content("<p>Meet at <b>noon</b>.</p><script>steal()</script>", subtype="html")
    else:
        message.set_content("Meet at noon in room 4.\n\nBring the figures.")
    message.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="figures.pdf"
    )
    path.write_bytes(bytes(message))
    return path


def write_zip(
    path: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    """A zip archive with the given members."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def docx_with_document_xml(path: Path, document_xml: bytes) -> Path:
    """A minimal DOCX-shaped zip whose word/document.xml is exactly ``document_xml``."""
    content_types = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        b'<Default Extension="xml" ContentType="application/xml"/></Types>'
    )
    return write_zip(
        path, {"[Content_Types].xml": content_types, "word/document.xml": document_xml}
    )


def zip_bomb_docx(path: Path, megabytes: int = 200) -> Path:
    """A DOCX-shaped zip with a member of ``megabytes`` MB of zeros (about 1000:1)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(megabytes):
                member.write(block)
    return path


def ok_text(outcome: ParseOutcome) -> str:
    """The text of a parse that must have succeeded, pages joined by blank lines."""
    assert outcome.status == "ok", outcome.reason
    assert outcome.document is not None
    return "\n\n".join(page.text for page in outcome.document.pages)
