"""Write the demo drive's PDF and Word documents (committed; run again after editing the text).

    .venv/bin/python demo/make_office_files.py

PDFs are made with fpdf2 and Word files with python-docx (the `dev` extra), with fixed
metadata and timestamps so that a re-run changes nothing unless the text changed. One PDF is
a scan (a picture of text, no text layer), to show how the pipeline reports it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import docx
from fpdf import FPDF
from PIL import Image, ImageDraw

DRIVE = Path(__file__).resolve().parent / "drive"
# Zip members get this timestamp, so the .docx bytes depend only on the content.
FIXED_ZIP_TIME = (2026, 1, 5, 9, 0, 0)


@dataclass(frozen=True)
class Document:
    path: str
    title: str
    author: str
    created: datetime
    sections: list[tuple[str, list[str]]]  # (heading, paragraphs)


DOCUMENTS = [
    Document(
        "legal/mutual-nda-harbourline-systems.pdf",
        "Mutual Non-Disclosure Agreement - Harbourline Systems",
        "Legal Department",
        datetime(2025, 9, 2, 10, 0, tzinfo=UTC),
        [
            (
                "Mutual Non-Disclosure Agreement",
                [
                    "This Mutual Non-Disclosure Agreement (the Agreement) is made on 2 September 2025 between "
                    "Everleigh Insurance Brokers Ltd, a company registered in England and Wales under number "
                    "08811234 (Everleigh), and Harbourline Systems Ltd, registered under number 11930457 "
                    "(Harbourline), each a Party and together the Parties.",
                    "The Parties wish to evaluate a possible integration of Harbourline's claims-triage software "
                    "with Everleigh's broker platform (the Purpose) and will disclose confidential information "
                    "to each other for that Purpose only.",
                ],
            ),
            (
                "1. Confidential Information",
                [
                    "Confidential Information means all information disclosed by a Party (the Discloser) to the "
                    "other Party (the Recipient), whether in writing, orally or by demonstration, that is marked "
                    "as confidential or would reasonably be regarded as confidential, including source code, "
                    "pricing, customer lists, business plans and the terms of this Agreement.",
                    "Confidential Information does not include information that is or becomes public other than "
                    "through a breach of this Agreement, was lawfully known to the Recipient before disclosure, "
                    "is received from a third party without a duty of confidence, or is independently developed.",
                ],
            ),
            (
                "2. Obligations of the Recipient",
                [
                    "The Recipient shall keep the Confidential Information secret, use it only for the Purpose, "
                    "and disclose it only to its employees and professional advisers who need to know it and are "
                    "bound by obligations of confidentiality no less strict than those in this Agreement.",
                    "The Recipient may disclose Confidential Information where required by law, a court or a "
                    "regulator, provided it gives the Discloser prompt written notice where lawful to do so.",
                ],
            ),
            (
                "3. Term, Return and Governing Law",
                [
                    "This Agreement continues for two years from its date; the obligations of confidentiality "
                    "survive for five years after termination. On written request the Recipient shall return or "
                    "destroy all Confidential Information and certify that it has done so.",
                    "No licence of any intellectual property right is granted by this Agreement. Damages may not "
                    "be an adequate remedy, and the Discloser may seek an injunction for any breach.",
                    "This Agreement and any dispute arising from it are governed by the law of England and Wales, "
                    "and the courts of England have exclusive jurisdiction.",
                ],
            ),
        ],
    ),
    Document(
        "legal/consultancy-agreement-fernbrook-digital.docx",
        "Consultancy Agreement - Fernbrook Digital",
        "Legal Department",
        datetime(2025, 11, 17, 14, 30, tzinfo=UTC),
        [
            (
                "Consultancy Agreement",
                [
                    "This Consultancy Agreement is entered into on 17 November 2025 between Everleigh Insurance "
                    "Brokers Ltd (the Client) and Fernbrook Digital LLP (the Consultant).",
                ],
            ),
            (
                "1. Services and Term",
                [
                    "The Consultant shall provide the data-migration advisory services described in Schedule 1 "
                    "(the Services) from 1 December 2025 until 31 May 2026, unless terminated earlier under "
                    "clause 6. The Consultant is an independent contractor and not an employee of the Client.",
                ],
            ),
            (
                "2. Fees",
                [
                    "The Client shall pay a day rate of GBP 950 plus VAT for each day of Services, invoiced monthly "
                    "in arrears. Invoices are payable within thirty days of receipt. Pre-approved travel expenses "
                    "are reimbursed at cost.",
                ],
            ),
            (
                "3. Intellectual Property",
                [
                    "All deliverables created by the Consultant in performing the Services vest in the Client on "
                    "creation. The Consultant assigns to the Client, with full title guarantee, all intellectual "
                    "property rights in the deliverables and waives any moral rights in them.",
                ],
            ),
            (
                "4. Liability and Indemnity",
                [
                    "Each party's total liability under this Agreement is limited to the fees paid in the twelve "
                    "months before the claim, except for liability for fraud, death or personal injury caused by "
                    "negligence, or breach of confidentiality, which is unlimited.",
                ],
            ),
            (
                "5. Termination and Governing Law",
                [
                    "Either party may terminate this Agreement on thirty days written notice, or immediately if "
                    "the other party commits a material breach that is not remedied within fourteen days. This "
                    "Agreement is governed by the law of England and Wales.",
                ],
            ),
        ],
    ),
    Document(
        "finance/invoice-inv-2025-0207-fernbrook-digital.pdf",
        "Invoice INV-2025-0207 - Fernbrook Digital LLP",
        "Fernbrook Digital Accounts",
        datetime(2026, 1, 2, 9, 0, tzinfo=UTC),
        [
            (
                "INVOICE INV-2025-0207",
                [
                    "Fernbrook Digital LLP, 44 Mill Lane, Bristol BS1 6QA. VAT registration GB 000 4411 27.",
                    "Bill to: Everleigh Insurance Brokers Ltd, Accounts Payable, 5 Saddler Way, Chelmsford CM1 1QQ. "
                    "Purchase order PO-8120. Contract: Consultancy Agreement dated 17 November 2025.",
                    "Invoice date: 2 January 2026. Payment due: 1 February 2026 (30 days).",
                ],
            ),
            (
                "Charges",
                [
                    "Data-migration advisory, December 2025: 14 days at GBP 950.00 per day = GBP 13,300.00.",
                    "Travel expenses, Chelmsford site visits (receipts attached) = GBP 386.40.",
                    "Net amount GBP 13,686.40. VAT at 20% GBP 2,737.28. Total payable GBP 16,423.68.",
                ],
            ),
            (
                "Payment",
                [
                    "Please pay by bank transfer quoting the invoice number as the payment reference. Account "
                    "name Fernbrook Digital LLP, sort code 00-00-00, account 00000000 (fictional, for demonstration "
                    "only). Late payments accrue interest under the Late Payment of Commercial Debts Act.",
                ],
            ),
        ],
    ),
    Document(
        "finance/budget-memo-fy2026-operating-costs.docx",
        "FY2026 Operating Budget Memo",
        "Finance Director",
        datetime(2025, 12, 8, 16, 0, tzinfo=UTC),
        [
            (
                "FY2026 operating budget: summary for the leadership team",
                [
                    "This memo summarises the approved operating budget for the financial year starting 1 April "
                    "2026. Total operating expenditure is budgeted at GBP 18.4 million, 3.1% above the FY2025 "
                    "forecast outturn, against forecast revenue of GBP 24.9 million.",
                ],
            ),
            (
                "Cost lines",
                [
                    "Staff costs GBP 11.2 million, including a 3.5% pay award and four new roles in claims "
                    "operations. Technology and hosting GBP 2.6 million, of which GBP 0.4 million is one-off "
                    "migration spend. Premises GBP 1.9 million after the Harbour Street lease renewal.",
                    "Professional fees GBP 0.9 million, covering audit, legal and the Fernbrook Digital "
                    "consultancy. Travel and expenses are capped at GBP 310,000, a 10% reduction.",
                ],
            ),
            (
                "Controls",
                [
                    "Budget holders receive monthly variance reports by the fifth working day. Any commitment "
                    "above GBP 50,000 needs a purchase order approved by the Finance Director, and variances above "
                    "5% of a cost line are explained at the quarterly forecast review.",
                ],
            ),
        ],
    ),
    Document(
        "people/employee-handbook-leave-and-benefits.pdf",
        "Employee Handbook - Leave and Benefits",
        "People Team",
        datetime(2025, 4, 1, 8, 0, tzinfo=UTC),
        [
            (
                "Employee Handbook: Leave and Benefits",
                [
                    "This section of the employee handbook explains the leave and benefits available to all "
                    "permanent employees. It applies from your first day of employment and should be read "
                    "together with your contract of employment.",
                ],
            ),
            (
                "Annual leave",
                [
                    "Full-time employees receive 26 days of annual leave plus public holidays, rising by one day "
                    "after three and five years of service. Part-time employees receive a pro rata entitlement. "
                    "Up to five unused days may be carried over into the first quarter of the next leave year.",
                ],
            ),
            (
                "Sickness absence and family leave",
                [
                    "Employees are paid in full for up to ten days of sickness absence in any rolling twelve "
                    "months, then statutory sick pay applies. Please tell your manager before 10am on the first day "
                    "of absence.",
                    "Enhanced maternity and adoption pay is 26 weeks at full pay; partners receive four weeks of "
                    "paid partner leave. Employees may request shared parental leave and unpaid parental leave.",
                ],
            ),
            (
                "Benefits",
                [
                    "The company pension matches employee contributions up to 6% of salary. All employees are "
                    "covered by private medical insurance, life assurance at four times salary and the employee "
                    "assistance programme, which offers confidential counselling.",
                    "The cycle-to-work scheme, season ticket loans and a yearly wellbeing allowance of GBP 300 are "
                    "available after probation. Questions about your benefits go to the People Team.",
                ],
            ),
        ],
    ),
    Document(
        "people/flexible-working-request-procedure.docx",
        "Flexible Working Request Procedure",
        "People Team",
        datetime(2025, 6, 30, 11, 0, tzinfo=UTC),
        [
            (
                "Flexible working request procedure",
                [
                    "Every employee may ask for a change to their working pattern from their first day of "
                    "employment, for example compressed hours, part-time work, different start and finish times "
                    "or working from home on set days.",
                ],
            ),
            (
                "Making a request",
                [
                    "Send your request in writing to your line manager, describing the pattern you would like, "
                    "the date you would like it to start and how you think any effect on your team could be "
                    "handled. You may make two requests in any twelve-month period.",
                ],
            ),
            (
                "How your manager decides",
                [
                    "Your manager will meet you within fourteen days to discuss the request, and you may bring a "
                    "colleague. A decision is given in writing within two months. A request can only be refused "
                    "for one of the business reasons set out in the employment legislation, and the reason will be "
                    "explained.",
                    "If your request is refused you may appeal to the Head of People within fourteen days. "
                    "Agreed changes are usually permanent, so a trial period of three months may be suggested.",
                ],
            ),
        ],
    ),
    Document(
        "people/new-starter-onboarding-pack.pdf",
        "New Starter Onboarding Pack",
        "People Team",
        datetime(2025, 8, 18, 9, 0, tzinfo=UTC),
        [
            (
                "Welcome to Everleigh: your onboarding pack",
                [
                    "Welcome to the team. This pack explains what happens in your first weeks, who to contact "
                    "and what we need from you before your start date.",
                ],
            ),
            (
                "Before your first day",
                [
                    "Please return your signed contract of employment, your bank details for payroll, proof of "
                    "your right to work in the UK and your emergency contact details to the People Team. Your "
                    "manager will confirm your start time and where to report on your first morning.",
                ],
            ),
            (
                "Your first weeks",
                [
                    "On day one you receive your laptop and building pass and meet your onboarding buddy. During "
                    "the first week you complete the mandatory training on data protection, information security "
                    "and our code of conduct. Your manager agrees objectives for your probation period with you.",
                    "Probation lasts six months, with review meetings at three and six months. Your holiday "
                    "entitlement, pension enrolment and benefits are explained in the employee handbook, and the "
                    "People Team runs a welcome session for new employees every month.",
                ],
            ),
        ],
    ),
    Document(
        "engineering/incident-report-2026-04-cache-outage.pdf",
        "Incident Report: Quote Service Cache Outage (2026-04-08)",
        "Platform Engineering",
        datetime(2026, 4, 10, 15, 0, tzinfo=UTC),
        [
            (
                "Incident report: quote service cache outage, 8 April 2026",
                [
                    "Severity SEV-2. Duration 38 minutes (09:12-09:50 UTC). The quote service returned errors for "
                    "about 18% of requests after the Redis cache cluster lost its primary node and clients kept "
                    "connecting to the old endpoint.",
                ],
            ),
            (
                "Timeline",
                [
                    "09:12 latency alarms fire on quote-api; p99 latency exceeds 4 seconds. 09:15 on-call engineer "
                    "paged. 09:24 cache primary found unreachable; automatic failover had promoted a replica, but "
                    "the client library cached the DNS record for the old primary. 09:41 quote-api pods restarted "
                    "in batches. 09:50 error rate back to baseline.",
                ],
            ),
            (
                "Root cause and actions",
                [
                    "The client library resolved the cluster endpoint once at start-up and never re-resolved it, "
                    "so failover did not reach running pods. Connection pools also had no timeout on connect, "
                    "which let request threads pile up behind dead connections.",
                    "Actions: upgrade the Redis client and enable endpoint re-resolution (owner: platform team, "
                    "due 30 April); add connect timeouts of 500 ms; add a failover game day to the quarterly "
                    "resilience plan; alert on cache error rate instead of latency alone.",
                ],
            ),
        ],
    ),
    Document(
        "engineering/design-doc-event-ingestion-pipeline.docx",
        "Design Doc: Event Ingestion Pipeline",
        "Data Platform Team",
        datetime(2026, 2, 16, 10, 0, tzinfo=UTC),
        [
            (
                "Design doc: event ingestion pipeline",
                [
                    "Status: approved. This document describes how policy and claims events are collected from "
                    "the services, validated and written to the analytics warehouse within five minutes.",
                ],
            ),
            (
                "Architecture",
                [
                    "Services publish events to a Kafka topic per domain with a schema registered in the schema "
                    "registry. A consumer group validates each event against its schema, deduplicates on the event "
                    "id and writes micro-batches of Parquet files to object storage every sixty seconds.",
                    "A loader job copies new files into the warehouse and records the highest committed offset per "
                    "partition, so a restart resumes exactly where it stopped without duplicates.",
                ],
            ),
            (
                "Scaling, failure handling and monitoring",
                [
                    "Partitions are sized for three times the current peak of 4,000 events per second. Events that "
                    "fail validation go to a dead-letter topic with the error attached and are replayed after a "
                    "fix. Dashboards show consumer lag, dead-letter volume and end-to-end latency; an alert fires "
                    "when lag exceeds two minutes.",
                ],
            ),
        ],
    ),
]


def write_pdf(document: Document, path: Path) -> None:
    pdf = FPDF()
    pdf.set_title(document.title)
    pdf.set_author(document.author)
    pdf.set_creator("autotag demo")
    pdf.set_creation_date(document.created)
    pdf.set_auto_page_break(auto=True, margin=18)
    for number, (heading, paragraphs) in enumerate(document.sections):
        if number == 0 or number % 2 == 1:  # a few sections per page, so the files have several pages
            pdf.add_page()
        pdf.set_font("helvetica", "B", 13 if number == 0 else 11)
        pdf.multi_cell(0, 7, heading)
        pdf.ln(2)
        pdf.set_font("helvetica", size=10)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 5.5, paragraph)
            pdf.ln(2)
    path.write_bytes(bytes(pdf.output()))


def write_docx(document: Document, path: Path) -> None:
    word = docx.Document()
    properties = word.core_properties
    properties.title = document.title
    properties.author = document.author
    properties.created = properties.modified = document.created.replace(tzinfo=None)
    properties.last_modified_by = document.author
    properties.revision = 1
    for number, (heading, paragraphs) in enumerate(document.sections):
        word.add_heading(heading, level=0 if number == 0 else 1)
        for paragraph in paragraphs:
            word.add_paragraph(paragraph)
    buffer = io.BytesIO()
    word.save(buffer)
    path.write_bytes(_fixed_times(buffer.getvalue()))


def _fixed_times(package: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(zipfile.ZipInfo(info.filename, FIXED_ZIP_TIME), source.read(info), zipfile.ZIP_DEFLATED)
    return out.getvalue()


def write_scan(path: Path) -> None:
    """A photographed whiteboard: an image of text with no text layer."""
    picture = Image.new("L", (600, 300), 235)
    draw = ImageDraw.Draw(picture)
    for row, line in enumerate(["Sprint 14 retro", "- flaky CI on integration tests", "- ship search v2"]):
        draw.text((30, 40 + 50 * row), line, fill=20)
    pdf = FPDF()
    pdf.set_creation_date(datetime(2026, 3, 20, 17, 0, tzinfo=UTC))
    pdf.add_page()
    pdf.image(picture, x=10, y=10, w=190)
    path.write_bytes(bytes(pdf.output()))


def main() -> None:
    for document in DOCUMENTS:
        path = DRIVE / document.path
        (write_pdf if path.suffix == ".pdf" else write_docx)(document, path)
        print(f"wrote {path.relative_to(DRIVE.parent)} ({path.stat().st_size} bytes)")
    scan = DRIVE / "engineering" / "whiteboard-photo-sprint-14-retro.pdf"
    write_scan(scan)
    print(f"wrote {scan.relative_to(DRIVE.parent)} ({scan.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
