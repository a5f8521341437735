package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chartsync/chartsync/examples/internal/chartfmt"
	"github.com/chartsync/chartsync/record"
)

// chartOp registers a command that applies one operation to a chart.
// nargs is how many entry references follow the chart.
func chartOp(name, args, help string, flags func(fs *flag.FlagSet), build func(v record.View, refs []string) (record.Op, error)) {
	register(&command{
		name: name, args: args, help: help, flags: flags,
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, pos []string) error {
			if len(pos) == 0 {
				return usagef("give a chart ID (or its first characters)")
			}
			return a.edit(ctx, pos[0], func(v record.View) (record.Op, error) { return build(v, pos[1:]) })
		},
	})
}

// entryRef resolves the single entry reference of a command.
func entryRef(v record.View, refs []string, what string) (string, error) {
	if len(refs) != 1 {
		return "", usagef("give the chart and then the %s (the first characters of their IDs are enough)", what)
	}
	return entry(v, refs[0])
}

func noRefs(refs []string) error {
	if len(refs) != 0 {
		return usagef("unexpected arguments %q: give the chart ID, and flags as -name VALUE", refs)
	}
	return nil
}

func clinicalCommands() {
	var al record.AddAllergy
	chartOp("allergy", "[flags] CHART", "Record an allergy.", func(fs *flag.FlagSet) {
		fs.StringVar(&al.Substance, "substance", "", "what the patient reacts to (required)")
		codeVar(fs, &al.Severity, "severity", "", "mild, moderate, severe or life-threatening (required)", severityCodes)
		fs.StringVar(&al.Reaction, "reaction", "", "what happens")
	}, func(v record.View, refs []string) (record.Op, error) { return al, noRefs(refs) })

	chartOp("no-allergies", "CHART", "Record that the patient has no known allergies.", nil,
		func(v record.View, refs []string) (record.Op, error) {
			return record.RecordNoKnownAllergies{}, noRefs(refs)
		})

	// The update commands change only what their flags give: the flag
	// set is kept to tell which flags the command line gave.
	var demoFlags, allergyFlags *flag.FlagSet
	var demo struct {
		given, family, sex, born, village, address, phone, nationalID, guardian, homeClinic string
		bornYear                                                                            int
	}
	chartOp("edit-patient", "CHART [-given NAME] [-family NAME] [-sex SEX] [-born YYYY-MM-DD | -born-year YYYY] [flags]",
		"Correct a patient's details; only the flags given are changed (an empty value clears a detail).", func(fs *flag.FlagSet) {
			demoFlags = fs
			fs.StringVar(&demo.given, "given", "", "given name")
			fs.StringVar(&demo.family, "family", "", "family name")
			codeVar(fs, &demo.sex, "sex", "", "female, male, other or unknown", sexCodes)
			fs.StringVar(&demo.born, "born", "", "birth date, YYYY-MM-DD")
			fs.IntVar(&demo.bornYear, "born-year", 0, "estimated birth year, when the date is not known (0 clears it)")
			fs.StringVar(&demo.village, "village", "", "village")
			fs.StringVar(&demo.address, "address", "", "address or directions")
			fs.StringVar(&demo.phone, "phone", "", "phone number")
			fs.StringVar(&demo.nationalID, "national-id", "", "national health ID")
			fs.StringVar(&demo.guardian, "guardian", "", "guardian or next of kin")
			fs.StringVar(&demo.homeClinic, "home-clinic", "", "home clinic")
		}, func(v record.View, refs []string) (record.Op, error) {
			if err := noRefs(refs); err != nil {
				return nil, err
			}
			var u record.UpdateDemographics
			for _, f := range []struct {
				name string
				dst  **string
				v    string
			}{
				{"given", &u.GivenName, demo.given}, {"family", &u.FamilyName, demo.family}, {"sex", &u.Sex, demo.sex},
				{"born", &u.BirthDate, demo.born}, {"village", &u.Village, demo.village}, {"address", &u.Address, demo.address},
				{"phone", &u.Phone, demo.phone}, {"national-id", &u.NationalID, demo.nationalID},
				{"guardian", &u.Guardian, demo.guardian}, {"home-clinic", &u.HomeClinic, demo.homeClinic},
			} {
				if given(demoFlags, f.name) {
					*f.dst = record.Ptr(f.v)
				}
			}
			if given(demoFlags, "born-year") {
				u.EstimatedBirthYear = record.Ptr(demo.bornYear)
			}
			if u == (record.UpdateDemographics{}) {
				return nil, usagef("say what to change, e.g. -phone 0712345678 or -born 1988-04-02")
			}
			return u, nil
		})

	var ua record.UpdateAllergy
	var uaReaction, uaSeverity, uaStatus string
	chartOp("update-allergy", "CHART ALLERGY [-severity S] [-reaction TEXT] [-status STATUS] [-reason TEXT]",
		"Change an allergy's severity, reaction or status (active, inactive, resolved); \"clinic error\" for one recorded by mistake.", func(fs *flag.FlagSet) {
			allergyFlags = fs
			codeVar(fs, &uaSeverity, "severity", "", "mild, moderate, severe or life-threatening", severityCodes)
			fs.StringVar(&uaReaction, "reaction", "", "what happens")
			codeVar(fs, &uaStatus, "status", "", "active, inactive or resolved", allergyStatuses)
			fs.StringVar(&ua.Reason, "reason", "", "why")
		}, func(v record.View, refs []string) (record.Op, error) {
			id, err := entryRef(v, refs, "allergy")
			if err != nil {
				return nil, err
			}
			up := record.UpdateAllergy{AllergyID: id, Reason: ua.Reason}
			if given(allergyFlags, "severity") {
				up.Severity = record.Ptr(uaSeverity)
			}
			if given(allergyFlags, "reaction") {
				up.Reaction = record.Ptr(uaReaction)
			}
			if given(allergyFlags, "status") {
				up.Status = record.Ptr(uaStatus)
			}
			if up.Severity == nil && up.Reaction == nil && up.Status == nil {
				return nil, usagef("say what to change: -severity, -reaction or -status")
			}
			return up, nil
		})

	chartOp("finalise-lab", "CHART LAB-RESULT", "Mark a preliminary lab result final.", nil,
		func(v record.View, refs []string) (record.Op, error) {
			id, err := entryRef(v, refs, "lab result")
			return record.FinalizeLabResult{LabResultID: id}, err
		})

	var dx record.Diagnose
	chartOp("diagnose", "[flags] CHART", "Record a diagnosis.", func(fs *flag.FlagSet) {
		fs.StringVar(&dx.Text, "text", "", "the diagnosis in words (required)")
		fs.StringVar(&dx.Code, "code", "", "ICD-10 code, e.g. B54")
		fs.StringVar(&dx.Onset, "onset", "", "onset date, YYYY-MM-DD")
		codeVar(fs, &dx.ClinicalStatus, "clinical", "", "clinical status (FHIR): active (default), recurrence, relapse, inactive, remission, resolved", clinicalCodes)
		codeVar(fs, &dx.ClinicalStatus, "status", "", "the same as -clinical", clinicalCodes)
		codeVar(fs, &dx.VerificationStatus, "verification", "", "verification status (FHIR): provisional (default), unconfirmed, differential, confirmed, refuted", verificationCodes)
		fs.StringVar(&dx.Note, "note", "", "a note")
	}, func(v record.View, refs []string) (record.Op, error) { return dx, noRefs(refs) })

	var cds record.ChangeDiagnosisStatus
	chartOp("diagnosis-status", "[flags] CHART DIAGNOSIS", "Change a diagnosis's clinical or verification status.", func(fs *flag.FlagSet) {
		codeVar(fs, &cds.ClinicalStatus, "clinical", "", "clinical status: active, recurrence, relapse, inactive, remission, resolved", clinicalCodes)
		codeVar(fs, &cds.ClinicalStatus, "status", "", "the same as -clinical", clinicalCodes)
		codeVar(fs, &cds.VerificationStatus, "verification", "", "unconfirmed, provisional, differential, confirmed, refuted", verificationCodes)
		fs.StringVar(&cds.Reason, "reason", "", "why")
	}, func(v record.View, refs []string) (record.Op, error) {
		id, err := entryRef(v, refs, "diagnosis")
		cds.DiagnosisID = id
		return cds, err
	})

	var rx record.Prescribe
	chartOp("prescribe", "[flags] CHART", "Prescribe a drug.", func(fs *flag.FlagSet) {
		fs.StringVar(&rx.Drug, "drug", "", "drug name, generic or brand (required); coded from the drug dictionary when it is there")
		fs.StringVar(&rx.ATC, "atc", "", "WHO ATC code, e.g. J01CA04 (default: the dictionary's code for the drug)")
		fs.StringVar(&rx.DrugCode, "code", "", "a drug code of another system (RxNorm, a national list)")
		fs.Float64Var(&rx.Dose, "dose", 0, "dose amount (required)")
		codeVar(fs, &rx.DoseUnit, "unit", "", "mg, g, mcg, ml, IU, units, tablet, capsule, drop, puff, sachet, suppository (required)", doseUnitCodes)
		codeVar(fs, &rx.Route, "route", "oral", "oral, IV, IM, SC, topical, inhaled, rectal, ...", routeCodes)
		codeVar(fs, &rx.Frequency, "freq", "", "OD, BD, TDS, QID, Q4H, Q6H, Q8H, Q12H, NOCTE, PRN, STAT, WEEKLY, in any case (required)", frequencyCodes)
		fs.IntVar(&rx.DurationDays, "days", 0, "duration in days")
		fs.StringVar(&rx.Start, "start", "", "start date, YYYY-MM-DD")
		fs.StringVar(&rx.End, "end", "", "end date, YYYY-MM-DD")
		fs.StringVar(&rx.Instructions, "instructions", "", "instructions for the patient")
	}, func(v record.View, refs []string) (record.Op, error) { return rx, noRefs(refs) })

	var rd record.ReviseDose
	chartOp("revise-dose", "[flags] CHART PRESCRIPTION", "Change the dose (and unit or frequency) of a prescription.", func(fs *flag.FlagSet) {
		fs.Float64Var(&rd.Dose, "dose", 0, "new dose amount (required)")
		codeVar(fs, &rd.DoseUnit, "unit", "", "new unit (unchanged if not given)", doseUnitCodes)
		codeVar(fs, &rd.Frequency, "freq", "", "new frequency (unchanged if not given)", frequencyCodes)
		fs.StringVar(&rd.Reason, "reason", "", "why")
	}, func(v record.View, refs []string) (record.Op, error) {
		id, err := entryRef(v, refs, "prescription")
		rd.PrescriptionID = id
		return rd, err
	})

	var reason string
	reasonFlag := func(fs *flag.FlagSet) { fs.StringVar(&reason, "reason", "", "why") }
	for _, c := range []struct {
		name, help string
		op         func(id string) record.Op
	}{
		{"discontinue", "Stop a prescription (a reason is required).", func(id string) record.Op { return record.Discontinue{PrescriptionID: id, Reason: reason} }},
		{"hold", "Put a prescription on hold.", func(id string) record.Op { return record.PutOnHold{PrescriptionID: id, Reason: reason} }},
		{"resume", "Resume a prescription that is on hold.", func(id string) record.Op { return record.Resume{PrescriptionID: id, Reason: reason} }},
		{"complete", "Mark a prescription completed.", func(id string) record.Op { return record.Complete{PrescriptionID: id} }},
	} {
		chartOp(c.name, "[-reason TEXT] CHART PRESCRIPTION", c.help, reasonFlag, func(v record.View, refs []string) (record.Op, error) {
			id, err := entryRef(v, refs, "prescription")
			return c.op(id), err
		})
	}

	var lab record.RecordLabResult
	var labValue, refLow, refHigh, critLow, critHigh *optFloat
	var specimen string
	var preliminary bool
	chartOp("lab", "[flags] CHART", "Record a lab result.", func(fs *flag.FlagSet) {
		fs.StringVar(&lab.Test, "test", "", "test name (required)")
		fs.StringVar(&lab.LOINC, "loinc", "", "LOINC code with its check digit, e.g. 718-7")
		labValue = optFloatFlag(fs, "value", "numeric value")
		fs.StringVar(&lab.TextValue, "text", "", "text value (instead of -value), e.g. \"positive\" or \"<1000 copies/mL\"")
		fs.StringVar(&lab.RefText, "range", "", "reference range as text, e.g. \"negative\": a text value equal to it is normal")
		lab.AbnormalTexts, lab.CriticalTexts = nil, nil // a flag.Value keeps what an earlier run set
		fs.Var((*textList)(&lab.AbnormalTexts), "abnormal", "text values that are abnormal, comma-separated, e.g. \"positive\"")
		fs.Var((*textList)(&lab.CriticalTexts), "critical-text", "text values that are critical, comma-separated")
		fs.StringVar(&lab.Unit, "unit", "", "unit of a numeric value, e.g. g/dL")
		refLow = optFloatFlag(fs, "low", "reference range, low end")
		refHigh = optFloatFlag(fs, "high", "reference range, high end")
		critLow = optFloatFlag(fs, "critical-low", "critical below this")
		critHigh = optFloatFlag(fs, "critical-high", "critical above this")
		fs.StringVar(&specimen, "specimen", "", "specimen time, YYYY-MM-DDTHH:MM (default now)")
		fs.BoolVar(&preliminary, "preliminary", false, "the result is preliminary")
	}, func(v record.View, refs []string) (record.Op, error) {
		lab.Value, lab.RefLow, lab.RefHigh, lab.CriticalLow, lab.CriticalHigh = labValue.v, refLow.v, refHigh.v, critLow.v, critHigh.v
		t, err := parseTime(specimen)
		if err != nil {
			return nil, err
		}
		lab.SpecimenAt = t
		if preliminary {
			lab.Status = record.StatusPreliminary
		}
		return lab, noRefs(refs)
	})

	var cl record.CorrectLabResult
	var corrValue *optFloat
	chartOp("correct-lab", "[flags] CHART LAB-RESULT", "Correct a lab result; the earlier value is kept in the history.", func(fs *flag.FlagSet) {
		corrValue = optFloatFlag(fs, "value", "the correct numeric value")
		fs.StringVar(&cl.TextValue, "text", "", "the correct text value")
		fs.StringVar(&cl.Unit, "unit", "", "the correct unit (unchanged if not given)")
		fs.StringVar(&cl.Reason, "reason", "", "why (required)")
	}, func(v record.View, refs []string) (record.Op, error) {
		id, err := entryRef(v, refs, "lab result")
		cl.LabResultID, cl.Value = id, corrValue.v
		return cl, err
	})

	var enc record.AddEncounter
	var bp string
	chartOp("encounter", "[flags] CHART", "Record a visit with vitals and a note.", func(fs *flag.FlagSet) {
		fs.StringVar(&enc.Complaint, "complaint", "", "why the patient came (required)")
		fs.StringVar(&enc.Date, "date", "", "date, YYYY-MM-DD (default today)")
		fs.StringVar(&enc.Clinician, "clinician", "", "who saw the patient")
		fs.StringVar(&bp, "bp", "", "blood pressure, e.g. 120/80")
		fs.Float64Var(&enc.Vitals.Pulse, "pulse", 0, "pulse, beats per minute")
		fs.Float64Var(&enc.Vitals.Temperature, "temp", 0, "temperature, °C")
		fs.Float64Var(&enc.Vitals.Weight, "weight", 0, "weight, kg")
		fs.Float64Var(&enc.Vitals.Height, "height", 0, "height, cm")
		fs.Float64Var(&enc.Vitals.SpO2, "spo2", 0, "oxygen saturation, %")
		fs.StringVar(&enc.Note, "note", "", "free-text note")
	}, func(v record.View, refs []string) (record.Op, error) {
		if bp != "" {
			sys, dia, ok := strings.Cut(bp, "/")
			s, err1 := strconv.ParseFloat(sys, 64)
			d, err2 := strconv.ParseFloat(dia, 64)
			if !ok || err1 != nil || err2 != nil {
				return nil, usagef("-bp %q is not like 120/80", bp)
			}
			enc.Vitals.BPSystolic, enc.Vitals.BPDiastolic = s, d
		}
		return enc, noRefs(refs)
	})

	var appendText string
	chartOp("note", "-append TEXT CHART ENCOUNTER", "Add to an encounter's note (others may edit it at the same time).", func(fs *flag.FlagSet) {
		fs.StringVar(&appendText, "append", "", "text to add at the end of the note (required)")
	}, func(v record.View, refs []string) (record.Op, error) {
		id, err := entryRef(v, refs, "encounter")
		if err != nil {
			return nil, err
		}
		pos := 0
		for _, e := range v.Encounters {
			if e.ID == id {
				pos = len([]rune(e.Note))
			}
		}
		text := appendText
		if pos > 0 {
			text = "\n" + text
		}
		return record.EditNote{EncounterID: id, Pos: pos, Insert: text}, nil
	})

	var refer record.Refer
	chartOp("refer", "-to CLINIC [-reason TEXT] CHART", "Share the chart with another clinic (a referral).", func(fs *flag.FlagSet) {
		fs.StringVar(&refer.ToClinic, "to", "", "the clinic to refer the patient to (required)")
		fs.StringVar(&refer.Reason, "reason", "", "why")
	}, func(v record.View, refs []string) (record.Op, error) { return refer, noRefs(refs) })

	chartOp("end-referral", "[-reason TEXT] CHART REFERRAL", "Stop sharing the chart with a referred clinic.", reasonFlag,
		func(v record.View, refs []string) (record.Op, error) {
			if len(refs) != 1 {
				return nil, usagef("give the chart and then the referral (see \"clinic show CHART\")")
			}
			for _, r := range v.Referrals {
				if strings.HasPrefix(r.ID, strings.ToLower(refs[0])) {
					return record.EndReferral{ReferralID: r.ID, Reason: reason}, nil
				}
			}
			return nil, fmt.Errorf("the chart has no referral starting with %q", refs[0])
		})

	chartOp("error", "-reason TEXT CHART ENTRY", "Mark an entry as entered in error (it is hidden, never deleted).", reasonFlag,
		func(v record.View, refs []string) (record.Op, error) {
			id, err := entryRef(v, refs, "entry")
			return record.MarkEnteredInError{EntryID: id, Reason: reason}, err
		})

	chartOp("resolve", "CHART ENTRY FIELD VALUE", "Settle a conflict: keep VALUE for the entry's FIELD.", nil,
		func(v record.View, refs []string) (record.Op, error) {
			if len(refs) != 3 {
				return nil, usagef("give the chart, the entry, the field and the value to keep (see the CONFLICTS of \"clinic show\")")
			}
			id, err := entry(v, refs[0])
			return record.ResolveConflict{EntryID: id, Field: refs[1], Value: refs[2]}, err
		})

	register(&command{
		name: "history", args: "CHART", help: "Show who did what to a chart, and when.",
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			v, err := a.view(ctx, args)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "History of %s [chart %s]:\n", v.Patient.FullName(), chartfmt.Short(v.ChartID))
			chartfmt.History(a.out, inLocalTime(v), "  ")
			return nil
		},
	})
}

// textList is a flag of comma-separated texts.
type textList []string

func (l *textList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *textList) Set(s string) error {
	*l = nil
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			*l = append(*l, t)
		}
	}
	return nil
}

func parseTime(s string) (time.Time, error) {
	if s == "" || s == "now" {
		return time.Now(), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("%q is not a time like 2026-03-02T14:30", s)
}
