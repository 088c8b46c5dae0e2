"""MIMIC-IV-ECG machine-report statements -> condition ids with a certainty, or a non-diagnostic class.

The statements are short, formulaic English written by ECG machines (GE Marquette 12SL, Philips). The rules
here are linguistic, not a lookup of whole statements:

1. Normalise (case, decoration such as ``***``/``---``, abbreviations like ``I.V.``).
2. Split into clauses at ``,`` ``;`` ``.`` `` - `` ``: `` and at the connectors ``with``/``w/``/``but``, so
   "Sinus rhythm with borderline 1st degree A-V block" keeps "borderline" on the block only.
3. Find findings with a phrase lexicon (longest match first, no overlaps). Most phrases give fixed condition
   ids; some give a *kind* resolved with the rest of the statement: infarct/ischaemia/injury take the location
   words (anterior, inferior, ant/septal, lateral, ...); "acute"/"recent"/"old" date a named infarct;
   secondary repolarisation abnormality next to LVH is LV strain; an "N:1 A-V block" in atrial flutter or
   fibrillation is a conduction ratio, not a separate block. In the text the rules leave unclaimed, the
   vocabulary's own multi-word names and synonyms (the synonym table of ``conditions.csv``) are matched too.
4. Qualifier cues lower the certainty of findings (table :data:`QUALIFIER_CERTAINTY`). A cue applies to the
   findings after it in its clause ("possible atrial flutter"); when none follows, to the findings before it
   ("ST changes are borderline"). Cues that open a hypothesis ("consider", "cannot rule out", "suggests")
   reach across "with". "X or Y" weakens both when X and Y are different findings.
5. Negation cues ("no", "without", "not", "absence of") drop the findings after them in the clause, and
   "no longer present"/"resolved" the findings before them (kept in ``negated``); hypothetical cues
   ("repeat if ... suspected") drop findings without negating them.
6. A statement without findings is non-diagnostic when a technical/administrative pattern matches
   (:data:`NON_DIAGNOSTIC_PATTERNS`), ``negative_finding`` when only negated findings remain, and
   ``continuation`` when it only qualifies a rhythm named in the statement before ("with rapid ventricular
   response"); anything else is unmapped.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache

# Certainty given to a finding under each qualifier (definite statements: 1.0). Several cues: the lowest wins.
QUALIFIER_CERTAINTY: dict[str, float] = {
    "probable": 0.7,  # probable, probably, likely
    "consistent": 0.7,  # consistent with, compatible with
    "suggests": 0.6,  # suggests, suggestive of, suggested by
    "possible": 0.5,  # possible, possibly, may be, could be, might, questionable, '?'
    "consider": 0.5,  # consider
    "borderline": 0.5,  # borderline, minimal, equivocal
    "normal_variant": 0.5,  # may be a normal variant, probably normal for age
    "alternative": 0.5,  # X or Y, and/or
    "cannot_rule_out": 0.3,  # cannot rule out, cannot be excluded, not excluded
}

_Q = [
    (r"cannot (?:be )?(?:rule[ds]? out|ruled out|excluded?)|can ?not (?:be )?excluded|not (?:be )?excluded"
     r"|not ruled out|rule out", "cannot_rule_out"),
    (r"(?:may be |probabl[ey] |possibl[ey] |could be )?(?:a )?normal variant(?: for age)?"
     r"|(?:may be |probably |possibly )?(?:within )?normal for (?:age|a female|this age)"
     r"|normal juvenile pattern|non-?diagnostic",
     "normal_variant"),
    (r"strongly suggests?|probabl[ey]|prob|likely", "probable"),
    (r"consistent with|compatible with", "consistent"),
    (r"suggest(?:s|ed by|ive of|ing)?", "suggests"),
    (r"possibl[ey]|may (?:also )?be|could be|might be|may represent|questionable", "possible"),
    ("?", "possible"),
    (r"consider(?:ed)?", "consider"),
    (r"borderline|minimal|equivocal", "borderline"),
    (r"if", "possible"),  # "LPFB if no pulmonary disease"
    (r"and/or|\bor\b", "alternative"),
]
_QUALIFIER_RE = re.compile("|".join(
    rf"(?P<q{i}>\?)" if p == "?" else rf"(?P<q{i}>\b(?:{p})(?!\w))" for i, (p, _) in enumerate(_Q)))
_QUALIFIER_NAMES = [name for _, name in _Q]
# "has replaced" (serial comparison): what follows was on the previous tracing, not on this one.
_NEGATION_RE = re.compile(r"\b(?:no|without|not|absence of|negative for|no evidence of|free of|"
                          r"(?:has|have) replaced)\b")
# Negations written after the finding ("atrial fibrillation no longer present").
_POST_NEGATION_RE = re.compile(r"\b(?:(?:is |are )?no longer (?:present|seen|evident)|"
                               r"(?:is |are )?not (?:present|seen)|(?:has |have )?resolved|"
                               r"(?:is |are )?absent)\b")
_HYPOTHETICAL_RE = re.compile(r"\brepeat\b|\bif\b[^,;]*\bsuspected\b")

# -- non-diagnostic classes ------------------------------------------------------------------------------
NON_DIAGNOSTIC_PATTERNS: list[tuple[str, str]] = [
    ("lead_placement", r"(?:lead|electrode) reversal|(?:leads?|electrodes?) (?:were |are )?reversed|"
                       r"reversed (?:arm |limb )?leads|misplac|"
                       r"lead placement|sequence error"),
    ("technical_quality", r"artifact|baseline wander|unsatisfactory|data quality|unsuitable for analysis|"
                          r"faulty|"
                          r"omitted from analysis|not used for (?:\w+ )?analysis|missing lead|missing data|"
                          r"measurement error|analysis error|incomplete analysis|electronic simulator|noise|"
                          r"poor (?:data )?quality|no further (?:\w+ )?analysis|not enough leads|unconfirmed|"
                          r"complex qrs morphology|check data|review advised|pacer detection|recording|"
                          r"repeat (?:ecg|tracing|recording)"),
    ("patient_data", r"without know|without knowledge|pediatric criteria|paediatric criteria|"
                     r"patient's (?:age|sex|gender)"),
    ("comparison", r"compared? (?:with|to)|comparison|previous (?:ecg|tracing|study)|prior (?:ecg|tracing)|"
                   r"since (?:last|previous|prior)|no (?:significant )?change|unchanged|serial changes|"
                   r"(?:has|have) (?:increased|decreased|changed)|questionable change|"
                   r"now (?:evident|present)|no longer"),
    ("summary", r"\babnormal ecg\b|\bborderline ecg\b|^summary\b|otherwise normal|abnormal for age|"
                r"borderline abnormal|interpret together|clinical (?:data|correlation|finding)|"
                r"normal variant|"
                r"abnormal rhythm ecg|\becg\b.*\b(?:abnormal|borderline)\b"),
    ("interpretation_note", r"changes (?:may|are|could)|rate/rhythm|as above|these changes|no further|"
                            r"also involved"),
    ("measurement", r"^(?:heart |ventricular |vent\.? |atrial )?rate\b|\b\d+ ?(?:ms|msec|bpm|mm|mv)\b|"
                    r"\b(?:qrs|qtc?|pr|p|t) (?:duration|interval|axis)\b[^a-z]*\d"),
    ("rhythm_description", r"(?:undetermined|unknown|regular|irregular|supraventricular) rhythm|"
                           r"rhythm (?:undetermined|unknown)"),
]
_ND_RES = [(name, re.compile(p)) for name, p in NON_DIAGNOSTIC_PATTERNS]

# -- findings lexicon ------------------------------------------------------------------------------------
# Each entry: regex (on normalised text) -> condition ids (tuple), or a kind resolved per statement (str).
# An optional third element is the certainty of the bare phrase (default 1.0).
_PVC = (r"(?:pvc(?:\(s\)|s)?|premature ventricular (?:contraction|complex|beat)(?:\(?e?s\)?)?|"
        r"vent(?:ricular)? premature (?:complex|contraction|beat)(?:\(?e?s\)?)?|ventricular extrasystoles?|"
        r"ventricular ectop(?:y|ic beats?|ics))")
_PAC = (r"(?:pac(?:\(s\)|s)?|premature atrial (?:contraction|complex|beat)(?:\(?e?s\)?)?|"
        r"atrial premature (?:complex|contraction|beat)(?:\(?e?s\)?)?|"
        r"(?:supraventricular|atrial) extrasystoles?|"
        r"(?:premature supraventricular|supraventricular premature) (?:complex|contraction|beat)"
        r"(?:\(?e?s\)?)?)")
_AVB = r"(?:a-?v|atrioventricular) block"
_MOD = r"(?:(?:frequent|occasional|multifocal|multiform|interpolated|multi|multiple|isolated|rare) )*"

LEXICON: list[tuple] = [
    # --- normal / sinus rhythms
    (r"otherwise normal ecg", "noop"),
    (r"normal ecg(?: based on available leads)?|normal electrocardiogram|within normal limits|"
     r"available leads normal", ("164854000",)),
    (r"(?:normal )?sinus rhythm", ("426783006",)),
    (r"(?:marked )?sinus bradycardia", ("426177001",)),
    (r"(?:irregular )?sinus tachycardia", ("427084000",)),
    (r"sinus arrhythmia", ("427393009",)),
    (r"sinus (?:arrest|pause)", ("5609005",)),
    (r"(?:(?:2nd|second) degree )?(?:\(?mobitz (?:i|ii|1|2)\)? )?(?:[2-4]:1 )?(?:s-?a|sino-?atrial) "
     r"(?:exit )?block|"
     r"sino-?atrial (?:(?:2nd|second) degree )?(?:mobitz (?:i|ii|1|2) )?block",
     ("65778007",)),
    (r"sick sinus(?: syndrome)?|sinus node dysfunction", ("60423000",)),
    (r"brady-?tachy(?:cardia)?(?: syndrome)?|tachy-?brady(?:cardia)?(?: syndrome)?", ("74615001",)),
    # --- atrial rhythms
    (r"atrial fibrillation ?(?:and|/|or) ?flutter|atrial flutter ?(?:and|/|or) ?fibrillation|"
     r"a-?fib ?/ ?flut(?:ter)?", ("195080001",)),
    (r"atrial fibrillation|a-?fib\b|\baf\b", ("164889003",)),
    (r"atrial flutter|a-?flutter|(?<!ventricular )flutter", ("164890007",)),
    (r"(?:rapid|uncontrolled|fast) (?:ventricular response|v-?rate|ventricular rate)", "rapid_response"),
    (r"(?:slow|controlled|moderate) (?:ventricular response|v-?rate|ventricular rate)", "noop"),
    (r"(?:irregular )?(?:ectopic|low) atrial (?:rhythm|bradycardia)", ("106068003",)),
    (r"(?:irregular )?(?:ectopic |paroxysmal |multifocal )?atrial tachycardia", ("713422000",)),
    (r"wandering atrial pacemaker|multifocal atrial rhythm", ("195101003",)),
    (r"supraventricular arrhythmia", ("esi:supraventricular_arrhythmia",)),
    (r"paroxysmal supraventricular tachycardia|\bpsvt\b", ("67198005",)),
    (r"supraventricular tachycardia|\bsvt\b", ("426761007",)),
    # --- junctional
    (r"accelerated (?:a-?v )?junctional rhythm", ("426664006",)),
    (r"junctional tachycardia", ("426648003",)),
    (r"junctional escape(?: rhythm| beats?| complex(?:es)?)?", ("426995002",)),
    (r"(?:premature junctional|junctional premature) (?:complex|contraction|beat)(?:\(?e?s\)?)?",
     ("251164006",)),
    (r"(?:a-?v )?junctional (?:rhythm|bradycardia)|nodal rhythm", ("29320008",)),
    # --- ventricular
    (r"(?:non-?sustained|nonsustained|short runs? of) ventricular tachycardia|\bnsvt\b", ("425856008",)),
    (r"ventricular tachycardia|\bv-?tach\b", ("164895002",)),
    (r"(?:extreme |wide (?:qrs|complex) |broad complex )tachycardia(?: with wide complex)?",
     ("esi:wide_qrs_tachycardia",)),
    (r"ventricular fibrillation", ("164896001",)),
    (r"ventricular flutter", ("111288001",)),
    (r"accelerated idioventricular rhythm", ("61277005",)),
    (r"(?:paroxysmal )?idioventricular rhythm", ("49260003",)),
    (r"ventricular escape rhythm", ("81898007",)),
    (r"ventricular escape (?:beat|complex)(?:\(?e?s\)?)?", ("75532003",)),
    (r"(?:ventricular )?fusion (?:complex|beat)(?:\(?e?s\)?)?", ("13640000",)),
    (rf"{_MOD}bigeminal {_PVC}|ventricular bigeminy", ("11157007", "427172004")),
    (rf"{_MOD}trigeminal {_PVC}|ventricular trigeminy", ("251180001", "427172004")),
    (rf"bigeminal {_PAC}|atrial bigeminy", ("251173003", "284470004")),
    (rf"ventricular couplets?|paired (?:ventricular premature complexes|{_PVC})|{_PVC} in couplets",
     ("251182009", "427172004")),
    (rf"(?:blocked|non-?conducted) {_PAC}", ("251170000",)),
    (r"aberrantly conducted supraventricular extrasystoles", ("esi:aberrant_conduction", "284470004")),
    (rf"{_MOD}{_PVC}", ("427172004",)),
    (rf"{_MOD}{_PAC}(?: in couplets)?", ("284470004",)),
    (r"(?:multiple )?premature complex(?:\(?es\)?)?|ectopic beats", ("esi:premature_complexes",)),
    (r"bigeminy|bigeminal (?:pattern|rhythm)", ("esi:bigeminal_pattern",)),
    (r"trigeminy|trigeminal (?:pattern|rhythm)", ("esi:trigeminal_pattern",)),
    (r"aberran(?:t|tly) (?:ventricular )?conduct(?:ion|ed)(?: (?:of )?(?:supraventricular|sv) "
     r"complex(?:\(?es\)?)?)?|(?:unclassified )?aberrant complex(?:\(?es\)?)?|aberrancy",
     ("esi:aberrant_conduction",)),
    (r"intermittent (?:conduction defect|bundle branch block|bbb)", ("esi:intermittent_conduction_defect",)),
    (r"undetermined irregularity|irregular (?:rate|rhythm)", ("698247007",)),
    (r"(?:cardiac )?(?:dys)?arrhythmia", ("698247007",)),
    # --- A-V conduction
    (rf"(?:1st|first) degree {_AVB}", ("270492004",)),
    (rf"(?:(?:2nd|second) degree {_AVB},? )?(?:\(?mobitz (?:type )?(?:i|1)\)?)(?: \(?wenckebach\)?)?"
     rf"(?: (?:(?:2nd|second) degree )?{_AVB})?|wenckebach", ("54016002", "195042002")),
    (rf"(?:\(?mobitz (?:type )?(?:ii|2)\)? (?:(?:2nd|second) degree )?{_AVB})|(?:2nd|second) degree "
     rf"\(?mobitz (?:type )?(?:ii|2)\)? {_AVB}", ("426183003", "195042002")),
    (rf"(?:predominant |predominantly )?[2-8]:1 (?:{_AVB}|a-?v conduction)", "ratio_block"),
    (rf"variable {_AVB}|{_AVB},? varying conduction", "ratio_block"),
    (rf"(?:2nd|second) degree {_AVB}", ("195042002",)),
    (rf"(?:3rd|third) degree {_AVB}|complete {_AVB}|complete heart block", ("27885002",)),
    (rf"(?:high degree |advanced )?{_AVB}|heart block", ("233917008",)),
    (r"(?:a-?v|atrioventricular) dissociation", ("50799005",)),
    (r"(?:short|shortened) pr(?: interval)?", ("49578007",)),
    (r"(?:prolonged|long) pr(?: interval)?", ("164947007",)),
    # --- bundle branches and fascicles
    (r"(?:iv |intraventricular )?conduction defect of (?:left bundle branch block|lbbb) type",
     ("164909002",)),
    (r"(?:iv |intraventricular )?conduction defect of (?:right bundle branch block|rbbb) type",
     ("59118001",)),
    (r"incomplete right bundle branch block|incomplete rbbb|\birbbb\b", ("713426002",)),
    (r"incomplete left bundle branch block|incomplete lbbb|\bilbbb\b", ("251120003",)),
    (r"(?:complete )?right bundle branch block|\brbbb\b", ("59118001",)),
    (r"(?:complete )?left bundle branch block|\blbbb\b", ("164909002",)),
    (r"(?:bi|tri)fascicular block", ("6374002",)),
    (r"bundle branch block", ("6374002",)),
    (r"left anterior (?:fascicular block|hemiblock)|\blafb\b|\blahb\b", ("445118002",)),
    (r"left posterior (?:fascicular block|hemiblock)|\blpfb\b|\blphb\b", ("445211001",)),
    (r"(?:nonspecific |non-specific |extensive )?(?:iv|intraventricular) conduction "
     r"(?:defect|delay|disturbance)|"
     r"(?:nonspecific |extensive )?\bivcd\b|abnormal ventricular conduction(?: pathways)?", ("698252002",)),
    (r"(?:ventricular |vent )?pre-?excitat(?:ion|'n)(?: ?\(wpw\))?", ("195060002", "74390002")),
    (r"wolff-?parkinson-?white(?: pattern| syndrome)?(?: type [ab])?|\bwpw\b(?: pattern)?(?: type [ab])?|"
     r"delta wave", ("74390002",)),
    (r"(?:left|right) acces'?s?(?:or)?y pathway", "noop"),
    # --- axis, voltage
    (r"(?:marked |abnormal )?left axis deviation|\blad\b", ("39732003",)),
    (r"leftward axis|(?:qrs )?axis leftward(?: \(superior\))?(?: for age)?", ("39732003",), 0.5),
    (r"(?:qrs )?axis superior to -30(?: degrees)?", ("39732003",)),
    (r"(?:marked |abnormal )?right axis deviation|\brad\b", ("47665007",)),
    (r"rightward axis", ("47665007",), 0.5),
    (r"right superior axis(?: deviation)?|(?:abnormal )?extreme (?:frontal )?(?:qrs )?axis(?: deviation)?|"
     r"northwest axis", ("esi:extreme_axis_deviation",)),
    (r"indeterminate (?:frontal )?(?:qrs )?axis", ("251200008",)),
    (r"s ?1,? ?s ?2,? ?s ?3(?: pattern| syndrome)?|s i,? ?ii,? ?iii(?: pattern| syndrome)?",
     ("esi:s1s2s3_pattern",)),
    (r"counter-?clockwise rotation|early transition", ("251199005",)),
    (r"clockwise rotation", ("251198002",)),
    (r"(?:generalized |generalised )?low (?:qrs )?voltages?(?: qrs)?", ("251146004",)),
    (r"high (?:qrs )?voltage", ("esi:high_qrs_voltage",)),
    # --- hypertrophy and atria
    (r"(?:(?:minimal|moderate) )?voltage criteria (?:for |of )?(?:lvh|left ventricular hypertrophy)|"
     r"lvh (?:by voltage|suggested by voltage criteria(?: only)?)|left ventricular high voltage|"
     r"abnormally high lewis index", ("55827005",)),
    (r"left ventricular hypertrophy|\blvh\b", ("164873001",)),
    (r"right ventricular hypertrophy|\brvh\b", ("89792004",)),
    (r"biventricular hypertrophy|\bbvh\b", ("esi:biventricular_hypertrophy",)),
    (r"septal hypertrophy", ("esi:septal_hypertrophy",)),
    (r"(?:ventricular )?hypertrophy", ("266249003",)),
    (r"(?:secondary )?(?:repolarization|repol) (?:abnormalit(?:y|ies)|abnrm)|secondary st-t changes",
     "repolarization"),
    (r"left atrial (?:enlargement|overload|dilatation)|\blae\b", ("67741000119109",)),
    (r"left atrial abnormality|(?:abnormal )?p terminal force", ("253352002",)),
    (r"right atrial (?:enlargement|overload)|\brae\b", ("446358003",)),
    (r"right atrial abnormality", ("253339007",)),
    (r"biatrial (?:enlargement|abnormality|hypertrophy)|atrial enlargement", ("195126007",)),
    (r"(?:abnormally )?(?:tall|prominent) p(?: waves?)?|peaked p(?: waves?)?", ("251223006",)),
    (r"(?:prolonged|wide|broad) p(?: waves?)?", ("251205003",)),
    (r"abnormal p(?: waves?)?|p wave abnormalit(?:y|ies)", ("164912004",)),
    # --- QRS, R, Q
    (r"(?:poor|abnormal|reversed) r[- ]?wave progression|late transition|low r(?: waves?)?|"
     r"(?:ant(?:erior)? )?r decrease|"
     r"loss of (?:anterior )?r", ("365413008",)),
    (r"(?:tall|broad|dominant|prominent) r(?: waves?)?|r/s ?> ?1|(?:abnormally )?high r:s ratio|"
     r"\br or r/s>1", ("164921003",)),
    (r"(?:abnormal|atypical|pathologic(?:al)?|prominent|significant)? ?q waves?|(?:abnormal|atypical) q\b|"
     r"\bq in\b|\+ ?q\b|q equivalent", ("164917005",)),
    (r"fragmented qrs", ("164942001",)),
    (r"(?:broad|wide) qrs(?: complex(?:es)?)?|wide (?:qrs|complex) rhythm|abnormal qrs|"
     r"prolonged qrs(?: duration)?|rsr'|r' in v1|delayed intrinsicoid deflection", ("164951009",)),
    (r"right ventricular conduction delay|right vcd|\brvcd\b", ("713426002",)),
    # --- ST-T
    (r"st elevation mi|\bstemi\b", ("57054005", "164931005")),
    (r"st(?:-segment| segment)? elev(?:ation)?|\bste\b|st (?:now |is |segments? )?elevated", ("164931005",)),
    (r"st(?:-segment| segment| junctional)? depr(?:ession)?|\bstd\b|st (?:now |is |segments? )?depressed",
     "st_depression"),
    (r"st-t(?: wave)? (?:changes?|abnormalit(?:y|ies)|abnrm)|st-t change|"
     r"st (?:&|and) t(?: wave)? (?:changes?|abnormalit(?:y|ies))", ("428750005",)),
    (r"st (?:changes?|abnormalit(?:y|ies))", ("55930002",)),
    (r"(?:t wave|t-wave) inversions?|inverted t(?:-| )?waves?|t inversions?", ("59931005",)),
    (r"tall t(?: waves?)?|peaked t(?: waves?)?|hyperacute t(?: waves?)?", ("251259000",)),
    (r"(?:flat|flattened|low(?: amplitude)?) t(?: waves?)?", ("esi:low_amplitude_t_waves",)),
    (r"(?:t wave|t-wave|t) (?:changes?|abnormalit(?:y|ies)|abnrm)|abnormal t\b", "t_change"),
    (r"(?:prominent )?u waves?|t-u fusion", ("164937009",)),
    (r"(?:prolonged|long) qtc?(?: interval)?|qtc? prolongation", ("111975006",)),
    (r"(?:short|shortened) qtc?(?: interval)?", ("77867006",)),
    (r"(?:normal )?early (?:repolari[sz]ation|repol)(?: pattern)?", ("428417006",)),
    (r"brugada(?: pattern| syndrome)?", ("418818005",)),
    (r"(?:post ?operative |acute )?pericarditis", ("esi:pericarditis",)),
    (r"digitalis(?: effect)?|digoxin(?: effect)?", ("esi:digitalis_effect",)),
    (r"hyperkalaemia|hyperkalemia", ("esi:hyperkalaemia",)),
    (r"hypokalaemia|hypokalemia|hypocalcaemia|hypocalcemia|hypercalcaemia|hypercalcemia|electrolyte|"
     r"metabolic(?: abnormality| abnrm)?", ("esi:electrolyte_abnormality",)),
    (r"(?:ventricular |lv )?aneurysm", ("esi:ventricular_aneurysm",)),
    (r"dextrocardia", ("esi:dextrocardia",)),
    (r"valvular heart disease|valve disease", ("368009",)),
    (r"heart failure", ("84114007",)),
    (r"coronary (?:artery|heart) disease", ("53741008",)),
    # --- ischaemia, injury, infarction
    (r"subendocardial injury", "subendocardial_injury"),
    (r"acute (?:myocardial )?ischa?emi[ac]", ("413444003",)),
    (r"(?:myocardial )?injury(?:/ischa?emia)?", "injury"),
    (r"(?:myocardial )?ischa?emi[ac](?: changes)?", "ischaemia"),
    (r"(?:myocardial )?infarct(?:ion)?|\bmi\b|(?:posterior|lateral) extension(?: of infarct(?:ion)?)?|"
     r"extension of infarct(?:ion)?", "infarct"),
    (r"\bpmi\b", ("esi:posterior_mi",)),
    (r"\b(?:acute|recent)\b", "acute"),
    (r"\bold\b", "old"),
    (r"age (?:undetermined|indeterminate)", "noop"),
    # --- pacing
    (r"a-?v (?:sequential|dual)[- ]?(?:paced|pacing|pacemaker)(?: complexes| rhythm)?|dual[- ]chamber "
     r"(?:pacemaker|pacing)|a-?v sequential and ventricular pacing", ("251268003", "251266004", "10370003")),
    (r"(?:demand )?atrial[- ]?(?:paced|pacing|(?:demand )?pacemaker)(?: rhythm| complexes)?",
     ("251268003", "10370003")),
    (r"(?:atrial-sensed )?(?:demand )?ventricular[- ]?(?:paced|pacing|(?:demand )?pacemaker)"
     r"(?: rhythm| complexes)?|"
     r"v-paced(?: complexes)?",
     ("251266004", "10370003")),
    (r"(?:electronic |artificial |demand )?(?:pacemaker|pacing|paced)(?: rhythm| complexes| activity)?",
     ("10370003",)),
    (r"failure to (?:sense|capture)(?: and/or (?:sense|capture))?|ineffective stimuli|loss of capture|"
     r"under-?sensing|over-?sensing", ("esi:pacemaker_malfunction",)),
    (r"(?:arm|limb|extremity) (?:leads?|electrodes?) (?:reversal|reversed)|"
     r"(?:suspect )?(?:arm|limb) lead reversal",
     ("251139008",)),
    # recognised words that carry no condition of their own
    (r"\bcva\b|hypertension|cardiac surgery|congenital heart disease", "noop"),
]

_LOCATION_RE = re.compile(
    r"\b(?P<loc>inferoposterolateral|inferoposterior|inferolateral|infero-lateral|anterolateral|antero-lateral|"
    r"anteroseptal|antero-septal|ant/septal|anterior|inferior|septal|high lateral|lateral|posterior|"
    r"extensive|"
    r"diffuse|widespread)\b")
_LOCATION_WORDS = {
    "inferoposterolateral": {"inferior", "posterior", "lateral"},
    "inferoposterior": {"inferior", "posterior"},
    "inferolateral": {"inferior", "lateral"}, "infero-lateral": {"inferior", "lateral"},
    "anterolateral": {"anterior", "lateral"}, "antero-lateral": {"anterior", "lateral"},
    "anteroseptal": {"septal"}, "antero-septal": {"septal"}, "ant/septal": {"septal"}, "septal": {"septal"},
    "anterior": {"anterior"}, "inferior": {"inferior"}, "high lateral": {"lateral"}, "lateral": {"lateral"},
    "posterior": {"posterior"}, "extensive": {"diffuse"}, "diffuse": {"diffuse"}, "widespread": {"diffuse"},
}
# Location sets -> condition ids, most specific combination first; what is left over is matched again.
_MI_BY_LOCATION = [
    ({"inferior", "posterior", "lateral"}, "esi:inferoposterolateral_mi"),
    ({"inferior", "posterior"}, "esi:inferoposterior_mi"), ({"inferior", "lateral"}, "esi:inferolateral_mi"),
    ({"anterior", "lateral"}, "esi:anterolateral_mi"), ({"septal"}, "esi:anteroseptal_mi"),
    ({"anterior"}, "54329005"), ({"inferior"}, "esi:inferior_mi"), ({"lateral"}, "esi:lateral_mi"),
    ({"posterior"}, "esi:posterior_mi"),
]
_ISCH_BY_LOCATION = [
    ({"inferior", "lateral"}, "esi:inferolateral_ischaemia"),
    ({"anterior", "lateral"}, "esi:anterolateral_ischaemia"),
    ({"septal"}, "esi:anteroseptal_ischaemia"), ({"anterior"}, "426434006"), ({"inferior"}, "425419005"),
    ({"lateral"}, "425623009"),
]
_INJ_BY_LOCATION = [
    ({"inferior", "lateral"}, "esi:subendocardial_injury_inferolateral"),
    ({"anterior", "lateral"}, "esi:subendocardial_injury_anterolateral"),
    ({"septal"}, "esi:subendocardial_injury_anteroseptal"),
    ({"anterior"}, "esi:subendocardial_injury_anteroseptal"),
    ({"inferior"}, "esi:subendocardial_injury_inferior"), ({"lateral"}, "esi:subendocardial_injury_lateral"),
]
MI_GENERIC, ISCH_GENERIC, ACUTE_MI, OLD_MI = "164865005", "164861001", "57054005", "164867002"
ACUTE_ISCH = "413444003"


@dataclass(frozen=True)
class StatementMapping:
    """What one report statement says."""

    conditions: dict[str, float] = field(default_factory=dict)  # condition id -> certainty 0..1
    non_diagnostic: str | None = None  # class of a technical/administrative remark (may come with conditions)
    qualifier: str | None = None  # the strongest (lowest-certainty) qualifier applied, if any
    negated: tuple[str, ...] = ()  # condition ids the statement denies ("no ST elevation")

    @property
    def status(self) -> str:
        """mapped | non_diagnostic | unmapped."""
        if self.conditions:
            return "mapped"
        return "non_diagnostic" if self.non_diagnostic else "unmapped"


@dataclass
class Coverage:
    """Coverage of a list of statements by the rules."""

    mapped: list[str] = field(default_factory=list)
    non_diagnostic: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    by_class: dict[str, int] = field(default_factory=dict)  # non-diagnostic class -> count

    @property
    def total(self) -> int:
        return len(self.mapped) + len(self.non_diagnostic) + len(self.unmapped)

    def share(self, part: str) -> float:
        """Share of 'mapped', 'non_diagnostic' or 'unmapped' statements (0 for an empty list)."""
        return len(getattr(self, part)) / self.total if self.total else 0.0

    @property
    def mapped_share(self) -> float:
        return self.share("mapped")

    @property
    def non_diagnostic_share(self) -> float:
        return self.share("non_diagnostic")

    @property
    def unmapped_share(self) -> float:
        return self.share("unmapped")

    def to_dict(self) -> dict[str, object]:
        return {"total": self.total, "mapped": len(self.mapped), "non_diagnostic": len(self.non_diagnostic),
                "unmapped": len(self.unmapped), "mapped_share": round(self.mapped_share, 4),
                "non_diagnostic_share": round(self.non_diagnostic_share, 4),
                "unmapped_share": round(self.unmapped_share, 4),
                "by_class": dict(sorted(self.by_class.items())),
                "unmapped_statements": list(self.unmapped)}


# -- implementation ----------------------------------------------------------------------------------------
@dataclass
class _Finding:
    start: int
    end: int
    spec: object  # tuple of ids or a kind
    base: float
    certainty: float = 1.0
    qualifier: str | None = None
    negated: bool = False
    dropped: bool = False


def _vocabulary_phrases() -> list[tuple[str, tuple[str, ...]]]:
    """The vocabulary's own names and synonyms as a second, lower-priority phrase table.

    Only multi-word terms are used: single words ("normal", "infarct") and abbreviations are too ambiguous in
    free text and are handled by the lexicon above, with their context rules.
    """
    from esi.conditions.vocabulary import load_vocabulary, normalize_text

    phrases: dict[str, tuple[str, ...]] = {}
    for cond in load_vocabulary():
        for term in (cond.name, *cond.synonyms):
            key = normalize_text(term)
            if " " in key and len(key) >= 8:
                phrases.setdefault(key, (cond.condition_id,))
    return sorted(phrases.items())


def _compile(table: list[tuple[str, object, float]]) -> list[tuple[re.Pattern[str], object, float]]:
    return [(re.compile(rf"(?<![\w-])(?:{pattern})(?!\w)"), spec, base) for pattern, spec, base in table]


@lru_cache(maxsize=1)
def _lexicon() -> list[tuple[re.Pattern[str], object, float]]:
    """The compiled rule lexicon; phrases start and end at word boundaries."""
    return _compile([(entry[0], entry[1], entry[2] if len(entry) > 2 else 1.0) for entry in LEXICON])


@lru_cache(maxsize=1)
def _vocabulary_lexicon() -> tuple[re.Pattern[str], dict[str, tuple[str, ...]]]:
    """One regex over all vocabulary phrases (longest first, so the longest wins) and their ids."""
    phrases = dict(_vocabulary_phrases())
    alternation = "|".join(re.escape(t) for t in sorted(phrases, key=lambda t: (-len(t), t)))
    return re.compile(rf"(?<![\w-])(?:{alternation})(?!\w)"), phrases


_DECORATION = re.compile(r"^[\s*\-#>]+|[\s*\-!#<]+$")
_SPACES = re.compile(r"\s+")
# Minor clauses end at punctuation and at "with"; major clauses only at punctuation and "but"/"although".
_CLAUSE_SPLIT = re.compile(r"\s*(?:[,;]|\.(?!\d)|\s-+\s|:\s|(?<!consistent )(?<!compatible )\bwith\b|\bbut\b|"
                           r"\bw/|\bthough\b|\balthough\b)\s*")
_MAJOR_SPLIT = re.compile(r"\s*(?:[,;]|\.(?!\d)|\s-+\s|:\s|\bbut\b|\bthough\b|\balthough\b)\s*")
# Cues that open a hypothesis ("consider sinus rhythm with 2:1 S-A block") reach across "with"; "consider"
# and "cannot rule out" also take a whole list ("consider myocardial disease, electrolyte imbalance, or ...").
_MAJOR_SCOPE = {"consider", "cannot_rule_out", "suggests", "consistent", "normal_variant"}
_TO_END = {"consider", "cannot_rule_out"}


def normalize_statement(text: str) -> str:
    """Lower-case, undecorated, whitespace-collapsed statement text."""
    s = text.strip().lower()
    s = _DECORATION.sub("", s)
    s = s.replace("i.v.", "iv").replace("\u2019", "'")
    s = re.sub(r"\*+", " ", s)
    s = re.sub(r"\s*\+\s*", " + ", s)
    return _SPACES.sub(" ", s).strip(" .")


def _clause_bounds(text: str, splitter: re.Pattern[str] = _CLAUSE_SPLIT) -> list[tuple[int, int]]:
    bounds, pos = [], 0
    for m in splitter.finditer(text):
        if m.start() > pos:
            bounds.append((pos, m.start()))
        pos = max(pos, m.end())
    if pos < len(text):
        bounds.append((pos, len(text)))
    return bounds or [(0, len(text))]


def _clause_of(bounds: list[tuple[int, int]], pos: int) -> int:
    """Index of the clause holding ``pos`` (a position in a separator counts for the clause before it)."""
    return max(0, bisect_right([a for a, _ in bounds], pos) - 1)


def _find(text: str) -> list[_Finding]:
    """Lexicon phrases in the text, longest first, without overlaps; then vocabulary terms in the gaps."""
    candidates = []
    for order, (pattern, spec, base) in enumerate(_lexicon()):
        for m in pattern.finditer(text):
            if m.end() > m.start():
                candidates.append((m.start() - m.end(), order, m.start(), m.end(), spec, base))
    candidates.sort()
    taken: list[_Finding] = []
    for _neg_len, _order, start, end, spec, base in candidates:
        if all(end <= f.start or start >= f.end for f in taken):
            taken.append(_Finding(start, end, spec, base))
    # vocabulary terms, only in the text the rules left unclaimed (claimed spans are blanked out)
    chars = list(text)
    for f in taken:
        chars[f.start:f.end] = "\0" * (f.end - f.start)
    pattern, phrases = _vocabulary_lexicon()
    for m in pattern.finditer("".join(chars)):
        taken.append(_Finding(m.start(), m.end(), phrases[m.group(0)], 1.0))
    return sorted(taken, key=lambda f: f.start)


def _locations(text: str, spans: list[tuple[int, int]]) -> set[str]:
    locs: set[str] = set()
    for m in _LOCATION_RE.finditer(text):
        if any(a <= m.start() < b for a, b in spans):
            continue  # a location word inside a fixed finding ("left anterior fascicular block")
        locs |= _LOCATION_WORDS[m.group("loc")]
    return locs


def _by_location(locs: set[str], table: list[tuple[set[str], str]], generic: str) -> list[str]:
    left, out = set(locs) - {"diffuse"}, []
    for need, cid in table:
        if need <= left:
            out.append(cid)
            left -= need
    return out or [generic]


def _apply_cues(text: str, findings: list[_Finding], bounds: list[tuple[int, int]],
                nd_spans: list[tuple[int, int]]) -> None:
    major = _clause_bounds(text, _MAJOR_SPLIT)
    by_clause: dict[int, dict[int, list[_Finding]]] = {}  # scope id -> clause -> findings, in text order
    for key, scope in ((0, bounds), (1, major)):
        starts = [a for a, _ in scope]
        groups: dict[int, list[_Finding]] = {}
        for f in findings:
            groups.setdefault(max(0, bisect_right(starts, f.start) - 1), []).append(f)
        by_clause[key] = groups
    cues = []
    for m in _QUALIFIER_RE.finditer(text):
        name = _QUALIFIER_NAMES[int(m.lastgroup[1:])]  # type: ignore[index]
        cues.append((m.start(), m.end(), name))
    masked = [(a, b) for a, b, _ in cues] + nd_spans
    for m in _POST_NEGATION_RE.finditer(text):
        cues.append((m.start(), m.end(), "post_negation"))
        masked.append((m.start(), m.end()))
    for m in _NEGATION_RE.finditer(text):
        if not any(a <= m.start() < b for a, b in masked):
            cues.append((m.start(), m.end(), "negation"))
    for m in _HYPOTHETICAL_RE.finditer(text):
        cues.append((m.start(), m.end(), "hypothetical"))
    for start, end, name in cues:
        key = 1 if name in _MAJOR_SCOPE else 0
        clause = _clause_of(major if key else bounds, start)
        in_clause = by_clause[key].get(clause, [])
        if not in_clause and name in ("normal_variant", "post_negation") and clause > 0:
            # appended remark ("RSR' in V1, probably normal variant") qualifies the clause before it
            in_clause = by_clause[key].get(clause - 1, [])
        after = [f for f in in_clause if f.start >= end]
        if name in _TO_END:
            after = [f for f in findings if f.start >= end]
        before = [f for f in in_clause if f.end <= start]
        if name == "alternative":
            # "X or Y" weakens the findings on either side of the "or", when there are two different ones
            # ("tall P in V1 or V2" stays definite)
            pair = [before[-1], after[0]] if (after and before) else []
            targets = pair if len({str(f.spec) for f in pair}) == 2 else []
        elif name in ("negation", "hypothetical"):
            targets = after
        elif name == "post_negation":
            targets = before
        else:
            targets = after or before
        for f in targets:
            if name in ("negation", "post_negation"):
                f.negated = True
            elif name == "hypothetical":
                f.dropped = True
            elif QUALIFIER_CERTAINTY[name] < f.certainty:
                f.certainty, f.qualifier = QUALIFIER_CERTAINTY[name], name


def _resolve(text: str, findings: list[_Finding],
             bounds: list[tuple[int, int]]) -> list[tuple[str, _Finding]]:
    """Turn each finding into condition ids, resolving kinds with the statement context."""
    fixed_spans = [(f.start, f.end) for f in findings if isinstance(f.spec, tuple)]
    ids_in_statement = {cid for f in findings if isinstance(f.spec, tuple) for cid in f.spec}
    kinds = {f.spec for f in findings if isinstance(f.spec, str)}
    has_infarct = "infarct" in kinds or ACUTE_MI in ids_in_statement
    in_af_or_flutter = bool({"164889003", "164890007", "195080001"} & ids_in_statement)
    whole_locs = _locations(text, fixed_spans)
    # "acute"/"old" date an infarct: they cannot be more certain than the infarct they qualify
    infarct_c = max((min(f.base, f.certainty) for f in findings if f.spec == "infarct" and not f.negated),
                    default=1.0)
    lvh_c = max((min(f.base, f.certainty) for f in findings if isinstance(f.spec, tuple)
                 and {"164873001", "55827005"} & set(f.spec) and not f.negated), default=1.0)
    out: list[tuple[str, _Finding]] = []
    for f in findings:
        spec = f.spec
        if isinstance(spec, tuple):
            out.extend((cid, f) for cid in spec)
            continue
        a, b = bounds[_clause_of(bounds, f.start)]
        locs = _locations(text[a:b], [(s - a, e - a) for s, e in fixed_spans if a <= s < b]) or whole_locs
        if spec == "infarct":
            out.extend((cid, f) for cid in _by_location(locs, _MI_BY_LOCATION, MI_GENERIC))
        elif spec == "ischaemia":
            out.extend((cid, f) for cid in _by_location(locs, _ISCH_BY_LOCATION, ISCH_GENERIC))
        elif spec == "injury":
            out.append((ACUTE_ISCH, f))
            if locs - {"diffuse"}:
                out.extend((cid, f) for cid in _by_location(locs, _ISCH_BY_LOCATION, ISCH_GENERIC))
        elif spec == "subendocardial_injury":
            out.extend((cid, f) for cid in _by_location(locs, _INJ_BY_LOCATION, ACUTE_ISCH))
        elif spec in ("acute", "old") and has_infarct:
            dated = replace(f, certainty=min(f.certainty, infarct_c))
            out.append((ACUTE_MI if spec == "acute" else OLD_MI, dated))
        elif spec == "st_depression":
            out.append(("429622005", f))
            if locs == {"inferior"}:
                out.append(("704997005", f))
        elif spec == "t_change":
            nonspecific = re.search(r"non-?specific", text[a:b]) is not None
            out.append(("esi:nonspecific_t_wave_changes" if nonspecific else "164934002", f))
        elif spec == "repolarization":
            if "164873001" in ids_in_statement or "55827005" in ids_in_statement:
                # LVH with secondary repolarisation abnormality = LV strain, as certain as the LVH
                out.append(("370365005", replace(f, certainty=min(f.certainty, lvh_c))))
            else:
                out.append(("428750005", f))
        elif spec == "rapid_response" and "164889003" in ids_in_statement:
            out.append(("314208002", f))
        elif spec == "ratio_block" and not in_af_or_flutter:
            out.append(("195042002" if re.search(r"\b2:1\b", text[f.start:f.end]) else "233917008", f))
    return out


@lru_cache(maxsize=65536)
def map_statement(text: str) -> StatementMapping:
    """Map one MIMIC report statement to conditions with certainty, or a non-diagnostic class."""
    norm = normalize_statement(str(text))
    if not norm:
        return StatementMapping(non_diagnostic="empty")
    nd_class, nd_spans = None, []
    for name, pattern in _ND_RES:
        for m in pattern.finditer(norm):
            nd_spans.append((m.start(), m.end()))
            nd_class = nd_class or name
    bounds = _clause_bounds(norm)
    findings = _find(norm)
    _apply_cues(norm, findings, bounds, nd_spans)
    conditions: dict[str, float] = {}
    negated: list[str] = []
    qualifier, qualifier_c = None, 2.0
    for cid, f in _resolve(norm, findings, bounds):
        if f.dropped:
            continue
        if f.negated:
            if cid not in negated:
                negated.append(cid)
            continue
        certainty = min(f.base, f.certainty)
        if certainty > conditions.get(cid, -1.0):
            conditions[cid] = certainty
        if f.qualifier and QUALIFIER_CERTAINTY[f.qualifier] < qualifier_c:
            qualifier, qualifier_c = f.qualifier, QUALIFIER_CERTAINTY[f.qualifier]
    if not conditions and nd_class is None:
        if negated:
            nd_class = "negative_finding"
        elif findings:
            nd_class = "continuation"  # "with rapid ventricular response": qualifies a rhythm named before
    return StatementMapping(conditions=conditions, non_diagnostic=nd_class, qualifier=qualifier,
                            negated=tuple(negated))


def coverage(statements: Iterable[str]) -> Coverage:
    """Classify statements as mapped / non-diagnostic / unmapped."""
    cov = Coverage()
    for statement in statements:
        statement = str(statement).strip()
        if not statement:
            continue
        mapping = map_statement(statement)
        if mapping.conditions:
            cov.mapped.append(statement)
        elif mapping.non_diagnostic:
            cov.non_diagnostic.append(statement)
            cov.by_class[mapping.non_diagnostic] = cov.by_class.get(mapping.non_diagnostic, 0) + 1
        else:
            cov.unmapped.append(statement)
    return cov
